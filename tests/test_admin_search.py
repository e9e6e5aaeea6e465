"""Admin searches take any text literally, on MongoDB's regex engine and on FerretDB's (RE2,
which refuses a backslash before letters, spaces or control characters)."""
from __future__ import annotations

import pytest

ODD = ["a b", "x.y", "(", "\\", "\x0e", "ü\U000a00d4", "+*?", "[a-z]", "C:\\Users"]


@pytest.mark.parametrize("path, param", [("/admin/api/audit", "action"), ("/admin/api/users", "q"),
                                         ("/admin/api/keys", "q"), ("/admin/api/topup-codes", "q")])
def test_any_search_text_is_an_answer_not_a_500(gateway, path, param):
    """Spaces, punctuation, control characters and astral-plane letters are searched for as
    they are: 200 with whatever matches."""
    for text in ODD:
        r = gateway.admin.get(path, params={param: text})
        assert r.status_code == 200, (text, r.status_code, r.text[:200])


def test_search_matches_punctuation_literally(gateway):
    """A user whose email has '+' and '.' is found by exactly that text, and '.' matches no
    other character."""
    gateway.admin.post("/admin/api/users", json={"username": "plus.user", "password": "password-123",
                                                 "email": "a+b@example.com"})
    gateway.admin.post("/admin/api/users", json={"username": "plusXuser", "password": "password-123"})
    names = {u["username"] for u in gateway.admin.get("/admin/api/users", params={"q": "a+b@"}).json()["data"]}
    assert names == {"plus.user"}
    names = {u["username"] for u in gateway.admin.get("/admin/api/users", params={"q": "plus.user"}).json()["data"]}
    assert names == {"plus.user"}
