# Shortcuts for dev.py, which needs nothing but Python 3.11+.
.PHONY: run test bench clean
run:
	python3 dev.py run
test:
	python3 dev.py test $(PYTEST_ARGS)
bench:
	python3 dev.py bench $(BENCH_ARGS)
clean:
	rm -rf .venv test-artifacts bench/results
