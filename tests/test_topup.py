"""Top-up codes: made through the management API, stored as hashes, redeemed once for exact credits."""
from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from services.billing.topup import TopupService, canonical_code, hash_code
from services.core.errors import InvalidRequest
from services.core.money import fmt_credits, to_micro
from tests.test_pages import signed_in, text_of

CODE_RE = re.compile(r"^CLM(-[A-HJ-NP-Z2-9]{4}){4}$")


def make_codes(gw, credits=10, **extra) -> list[str]:
    r = gw.admin.post("/admin/api/topup-codes", json={"credits": credits, **extra})
    assert r.status_code == 201, r.text
    return r.json()["codes"]


def test_admin_api_makes_codes_and_stores_only_their_hashes(gateway):
    """POST /admin/api/topup-codes returns `count` fresh codes; the database keeps only hashes and prefixes."""
    r = gateway.admin.post("/admin/api/topup-codes", json={"credits": "2.5", "count": 3, "note": "launch promo"})
    assert r.status_code == 201
    body = r.json()
    assert body["credits"] == 2.5 and body["note"] == "launch promo" and len(set(body["codes"])) == 3
    assert all(CODE_RE.match(code) for code in body["codes"])
    docs = gateway.run(gateway.services.db.topup_codes.find({}).to_list(None))
    assert sorted(d["code_hash"] for d in docs) == sorted(hash_code(canonical_code(c)) for c in body["codes"])
    stored = str(docs)
    assert not any(code in stored or code.replace("-", "") in stored for code in body["codes"])
    assert {d["amount"] for d in docs} == {2_500_000} and {d["redeemed_by"] for d in docs} == {None}


@pytest.mark.parametrize("body, param", [
    pytest.param({}, "credits", id="missing-credits"),
    pytest.param({"credits": 0}, "credits", id="zero"),
    pytest.param({"credits": -5}, "credits", id="negative"),
    pytest.param({"credits": "ten"}, "credits", id="not-a-number"),
    pytest.param({"credits": 2_000_000}, "credits", id="too-large"),
    pytest.param({"credits": 1, "count": 0}, "count", id="count-zero"),
    pytest.param({"credits": 1, "count": 1001}, "count", id="count-too-large"),
    pytest.param({"credits": 1, "count": "3"}, "count", id="count-string"),
    pytest.param({"credits": 1, "note": "n" * 201}, "note", id="long-note"),
])
def test_admin_api_rejects_bad_code_requests(gateway, body, param):
    """Bad amounts, counts or notes answer 400 naming the field, and no code is made."""
    r = gateway.admin.post("/admin/api/topup-codes", json=body)
    assert r.status_code == 400 and r.json()["error"]["param"] == param
    assert gateway.run(gateway.services.db.topup_codes.count_documents({})) == 0


def test_admin_api_for_codes_needs_the_admin_token(gateway):
    """Without the admin token, making codes answers 401."""
    r = httpx.post(gateway.url + "/admin/api/topup-codes", json={"credits": 5})
    assert r.status_code == 401


def test_code_is_redeemed_once_only_through_the_page(gateway):
    """Redeeming a code adds its credits once (ledger entry kind topup); a second redeem fails and the balance stays."""
    site = signed_in(gateway)
    code = make_codes(gateway, credits="7.125")[0]
    r = site.post("/topup", {"code": code})
    assert r.status_code == 302 and r.headers["location"] == "/topup"
    page = site.get("/topup").text
    assert "Added 7.125 credits" in page and text_of(page, "balance") == "7.125"
    assert gateway.micro_balance(site.username) == (7_125_000, 0)
    r = site.post("/topup", {"code": code})
    assert r.status_code == 400 and "unknown or has already been redeemed" in r.text
    assert gateway.micro_balance(site.username) == (7_125_000, 0)
    other = signed_in(gateway)
    assert "already been redeemed" in other.post("/topup", {"code": code}).text
    assert gateway.micro_balance(other.username) == (0, 0)
    user = gateway.run(gateway.services.users.by_username(site.username))
    ledger = gateway.run(gateway.services.billing.ledger(user["_id"]))
    assert [(e["kind"], e["amount"], e["balance_after"]) for e in ledger] == [("topup", 7_125_000, 7_125_000)]


def test_concurrent_redemptions_credit_a_code_once(gateway):
    """Ten simultaneous redemptions of one code (by two users) credit exactly one of them, once."""
    code = make_codes(gateway, credits=3)[0]
    users = [gateway.create_user(0), gateway.create_user(0)]
    ids = [gateway.run(gateway.services.users.by_username(u))["_id"] for u in users]

    async def race():
        service = TopupService(gateway.services.db, gateway.services.billing)
        return await asyncio.gather(*(service.redeem(ids[i % 2], code) for i in range(10)),
                                    return_exceptions=True)
    results = gateway.run(race())
    assert sum(1 for r in results if isinstance(r, tuple)) == 1
    assert all(isinstance(r, InvalidRequest) for r in results if not isinstance(r, tuple))
    balances = sorted(gateway.micro_balance(u)[0] for u in users)
    assert balances == [0, 3_000_000]


@pytest.mark.parametrize("typed", [
    pytest.param(lambda c: c.lower(), id="lower-case"),
    pytest.param(lambda c: c.replace("-", ""), id="no-dashes"),
    pytest.param(lambda c: c[4:], id="no-prefix"),
    pytest.param(lambda c: "  " + c.replace("-", " ") + " ", id="spaces"),
])
def test_codes_are_accepted_as_people_type_them(gateway, typed):
    """Case, dashes, spaces and a missing CLM- prefix do not matter when redeeming."""
    site = signed_in(gateway)
    code = make_codes(gateway, credits=1)[0]
    assert site.post("/topup", {"code": typed(code)}).status_code == 302
    assert gateway.micro_balance(site.username) == (1_000_000, 0)


@pytest.mark.parametrize("code, message", [
    pytest.param("", "Enter a top-up code", id="empty"),
    pytest.param("hello", "not a top-up code", id="malformed"),
    pytest.param("CLM-AAAA-AAAA-AAAA-AAAA", "unknown or has already been redeemed", id="unknown"),
    pytest.param("x" * 500, "not a top-up code", id="too-long"),
])
def test_bad_codes_are_refused_inline(gateway, code, message):
    """Empty, malformed, unknown and overlong codes re-show the form with 400 and leave the balance alone."""
    site = signed_in(gateway)
    r = site.post("/topup", {"code": code})
    assert r.status_code == 400 and message in r.text and 'aria-invalid="true"' in r.text
    assert gateway.micro_balance(site.username) == (0, 0)


def test_ledger_shows_every_movement_with_running_balance(gateway):
    """The top-up page lists top-ups and API usage, newest first, each with the balance after it."""
    site = signed_in(gateway)
    site.post("/topup", {"code": make_codes(gateway, credits=2)[0]})
    raw, _ = site.create_key()
    httpx.post(gateway.url + "/v1/messages", headers={"x-api-key": raw},
               json={"model": "claude-haiku-3-5", "max_tokens": 100, "messages": [{"role": "user", "content": "x"}]})
    html = site.get("/topup").text
    rows = re.findall(r'<td class="num (?:plus|minus)">([^<]+)</td>\s*<td class="num">([^<]+)</td>', html)
    balance = gateway.micro_balance(site.username)[0]
    spent = to_micro(2) - balance
    assert rows == [(f"−{fmt_credits(spent)}", fmt_credits(balance)), ("+2", "2")]
    assert text_of(html, "balance") == fmt_credits(balance)
