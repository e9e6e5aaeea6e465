"""Pages stay cheap with a heavy account (300 keys, 20,000 usage records with their rollups):
each page reads rollups and one page of rows, never every record, never one query per key.

The assertions count the database reads a page makes (a timed assertion would be flaky
and say little); `bench/pages.py` measures how long the same pages take to render."""
from __future__ import annotations

import pytest

from bench.heavy_account import seed
from tests.test_pages import Site

WATCHED = ("usage", "usage_daily", "api_keys", "ledger")


class QueryLog:
    """Records every read of the watched collections made through the services' database
    handle: (collection, method, the page size asked for)."""

    def __init__(self, db) -> None:
        self.db, self.calls = db, []

    def __enter__(self) -> "QueryLog":
        for name in WATCHED:
            self.db.__dict__[name] = _Watched(getattr(self.db, name), name, self.calls)
        return self

    def __exit__(self, *exc) -> None:
        for name in WATCHED:
            self.db.__dict__.pop(name, None)

    def reads(self, collection: str) -> list[tuple[str, int | None]]:
        return [(method, limit) for name, method, limit in self.calls if name == collection]


class _Watched:
    def __init__(self, collection, name: str, calls: list) -> None:
        self._collection, self._name, self._calls = collection, name, calls

    def __getattr__(self, method: str):
        target = getattr(self._collection, method)
        if method not in ("find", "find_one", "aggregate", "count_documents", "distinct"):
            return target

        def call(*args, **kwargs):
            entry = [self._name, method, None]
            self._calls.append(entry)
            result = target(*args, **kwargs)
            return _Cursor(result, entry) if method in ("find", "aggregate") else result
        return call


class _Cursor:
    """A cursor that notes the smallest limit / to_list length it was given."""

    def __init__(self, cursor, entry: list) -> None:
        self._cursor, self._entry = cursor, entry

    def _note(self, n) -> None:
        if n:
            self._entry[2] = n if self._entry[2] is None else min(self._entry[2], n)

    def limit(self, n):
        self._note(n)
        self._cursor = self._cursor.limit(n)
        return self

    def sort(self, *args, **kwargs):
        self._cursor = self._cursor.sort(*args, **kwargs)
        return self

    def skip(self, n):
        self._cursor = self._cursor.skip(n)
        return self

    async def to_list(self, length=None):
        self._note(length)
        return await self._cursor.to_list(length)

    def __aiter__(self):
        return self._cursor.__aiter__()


@pytest.fixture
def heavy(gateway):
    """A signed-in user with 300 keys and 20,000 usage records over the last 28 days."""
    site = Site(gateway)
    assert site.signup().status_code == 302
    uid = gateway.run(gateway.services.users.by_username(site.username))["_id"]
    gateway.run(seed(gateway.services.db, uid, [m.id for m in gateway.services.catalog.models()]))
    return site


def render(heavy, path: str) -> tuple[str, QueryLog]:
    with QueryLog(heavy.gw.services.db) as log:
        r = heavy.get(path)
    assert r.status_code == 200
    return r.text, log


@pytest.mark.parametrize("path", ["/dashboard", "/dashboard?page=40"])
def test_dashboard_reads_rollups_and_one_page_of_records(heavy, path):
    html, log = render(heavy, path)
    assert html.count("data-request-id=") == 25
    assert log.reads("usage") == [("find", 26)], "one page of records (+1 to know a next page exists)"
    assert len(log.reads("usage_daily")) <= 2 and len(log.reads("api_keys")) <= 2, log.calls


@pytest.mark.parametrize("path", ["/keys", "/keys?page=6"])
def test_keys_page_reads_one_page_of_keys_and_their_totals_in_one_query(heavy, path):
    html, log = render(heavy, path)
    assert html.count('class="button small secondary">Manage') == 50
    assert log.reads("usage") == [], "usage to date comes from the rollups"
    key_reads = log.reads("api_keys")
    assert 1 <= len(key_reads) <= 2 and all(limit is not None and limit <= 51 for method, limit in key_reads
                                            if method == "find"), key_reads
    assert log.reads("usage_daily") == [("find", None)], "all shown keys' totals in one read of their rollups"


def test_topup_and_docs_pages_read_no_usage_records(heavy):
    _, log = render(heavy, "/topup")
    assert log.reads("usage") == []
    assert all(limit is not None and limit <= 51 for _, limit in log.reads("ledger")), log.calls
    _, log = render(heavy, "/docs")
    assert log.reads("usage") == [] and log.reads("ledger") == []
