# Shortcuts for dev.py, which needs nothing but Python 3.11+.
.PHONY: run test test-embedded test-server ferretdb bench bench-driver clean
run:
	python3 dev.py run
# Both tiers: embedded (memory://), then a real server (README: Real-database test tier).
test:
	python3 dev.py test $(PYTEST_ARGS)
test-embedded:
	python3 dev.py test --tier=embedded $(PYTEST_ARGS)
test-server:
	python3 dev.py test --tier=server $(PYTEST_ARGS)
# Build FerretDB for the server tier into ~/.cache/cheaplm/bin (needs Go; once).
ferretdb:
	python3 tools/ferretdb.py build
bench:
	python3 dev.py bench $(BENCH_ARGS)
# Motor vs PyMongo's AsyncMongoClient on a real server (bench/driver.py).
bench-driver:
	python3 dev.py bench-driver $(BENCH_ARGS)
clean:
	rm -rf .venv test-artifacts bench/results
