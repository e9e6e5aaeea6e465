"""Management API for day-to-day operations: every key, top-up code batches, usage with
filters and CSV, the overview figures and the sign-up settings."""
from __future__ import annotations

import csv
import datetime as dt
import io

from handlers.api.admin import AdminApiHandler, TopupCodesAdminApiHandler, key_json
from services.core.clock import utcnow
from services.core.errors import InvalidRequest
from services.core.ids import as_object_id
from services.core.money import fmt_credits, to_credits

USAGE_CSV_FIELDS = ("created_at", "request_id", "username", "key_name", "model", "upstream", "endpoint", "stream",
                    "status", "input_tokens", "output_tokens", "cache_creation_input_tokens",
                    "cache_read_input_tokens", "total_tokens", "credits", "latency_ms", "error")
CODE_CSV_FIELDS = ("id", "prefix", "credits", "note", "status", "created_at", "created_by", "expires_at",
                   "redeemed_by", "redeemed_at", "voided_at")


def code_status(doc: dict, now: dt.datetime) -> str:
    if doc.get("redeemed_at"):
        return "redeemed"
    if doc.get("voided_at"):
        return "void"
    exp = doc.get("expires_at")
    if exp is not None and (exp if exp.tzinfo else exp.replace(tzinfo=dt.timezone.utc)) <= now:
        return "expired"
    return "unused"


async def usernames(services, user_ids) -> dict:
    ids = list({as_object_id(u) for u in user_ids if u is not None})
    docs = await services.db.users.find({"_id": {"$in": ids}}, {"username": 1}).to_list(None) if ids else []
    return {d["_id"]: d["username"] for d in docs}


async def code_views(services, docs: list[dict]) -> list[dict]:
    names, now = await usernames(services, [d.get("redeemed_by") for d in docs]), utcnow()
    return [{"id": str(d["_id"]), "prefix": d["prefix"], "credits": fmt_credits(d["amount"]), "note": d.get("note", ""),
             "status": code_status(d, now), "created_at": d.get("created_at"), "created_by": d.get("created_by"),
             "expires_at": d.get("expires_at"), "redeemed_by": names.get(d.get("redeemed_by")),
             "redeemed_at": d.get("redeemed_at"), "voided_at": d.get("voided_at")} for d in docs]


async def key_views(services, docs: list[dict]) -> list[dict]:
    names = await usernames(services, [d["user_id"] for d in docs])
    spent = await services.usage.totals_for_keys([d["_id"] for d in docs])
    out = []
    for d in docs:
        view = key_json(d, spent.get(d["_id"], 0))
        view.update(owner=names.get(d["user_id"]), revoked=bool(d.get("revoked")),
                    status="revoked" if d.get("revoked") else "frozen" if d.get("frozen") else "active")
        out.append(view)
    return out


def parse_day(value: str | None, param: str) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise InvalidRequest(f"{param}: a date as YYYY-MM-DD", param=param) from None


async def usage_query(handler) -> dict:
    """The usage filters of a request: username, key_id, model, upstream, status, since, until (days, UTC)."""
    s, arg = handler.services, handler.get_argument
    username = arg("username", "")
    user_id = (await s.users.by_username(username))["_id"] if username else None
    key_id = arg("key_id", "") or None
    status = arg("status", "")
    if status and status not in ("ok", "error", "abandoned") and not status.isdigit():
        raise InvalidRequest("status: ok, error, abandoned or an HTTP status", param="status")
    until = parse_day(arg("until", ""), "until")
    return s.usage.admin_query(user_id=user_id, key_id=key_id, model=arg("model", "") or None,
                               upstream=arg("upstream", "") or None, status=status or None,
                               since=parse_day(arg("since", ""), "since"),
                               until=until + dt.timedelta(days=1) if until else None)


async def usage_rows(services, rows: list[dict]) -> list[dict]:
    names = await usernames(services, [r.get("user_id") for r in rows])
    for r in rows:
        r["username"] = names.get(r.get("user_id"))
    return rows


def csv_text(rows: list[dict], fields: tuple[str, ...]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({f: ("" if r.get(f) is None else r.get(f)) for f in fields})
    return out.getvalue()


class KeysAdminApiHandler(AdminApiHandler):
    async def get(self) -> None:
        """?q= (name or prefix), status=active|frozen|revoked, limit, skip."""
        status = self.get_argument("status", "")
        if status not in ("", "active", "frozen", "revoked"):
            raise InvalidRequest("status: active, frozen or revoked", param="status")
        docs, total = await self.services.keys.list_all(
            self.get_argument("q", ""), status=status, limit=self.int_argument("limit", 50, low=1, high=200),
            skip=self.int_argument("skip", 0, low=0, high=10_000_000))
        self.write_json({"object": "list", "total": total, "data": await key_views(self.services, docs)})


class TopupCodesListAdminApiHandler(TopupCodesAdminApiHandler):
    async def get(self) -> None:
        """?q= (note or prefix), status=unused|redeemed|void|expired, limit, skip; format=csv for CSV."""
        status = self.get_argument("status", "")
        if status not in ("", "unused", "redeemed", "void", "expired"):
            raise InvalidRequest("status: unused, redeemed, void or expired", param="status")
        csv_out = self.get_argument("format", "") == "csv"
        docs, total = await self.services.topup.list(
            self.get_argument("q", ""), status=status,
            limit=100_000 if csv_out else self.int_argument("limit", 50, low=1, high=500),
            skip=0 if csv_out else self.int_argument("skip", 0, low=0, high=10_000_000))
        views = await code_views(self.services, docs)
        if csv_out:
            self.set_header("Content-Type", "text/csv; charset=utf-8")
            self.set_header("Content-Disposition", 'attachment; filename="topup-codes.csv"')
            return self.finish(csv_text(views, CODE_CSV_FIELDS))
        self.write_json({"object": "list", "total": total, "data": views})


class TopupCodeVoidAdminApiHandler(AdminApiHandler):
    async def post(self, code_id: str) -> None:
        doc = await self.services.topup.void(code_id)
        await self.audit("topup.void", code_id, before={"status": "unused"}, after={"status": "void"})
        self.write_json((await code_views(self.services, [doc]))[0])


class UsageFilteredAdminApiHandler(AdminApiHandler):
    async def get(self) -> None:
        """Filters: username, key_id, model, upstream, status, since, until; limit, skip;
        format=csv for every matching record as CSV."""
        query = await usage_query(self)
        if self.get_argument("format", "") == "csv":
            self.set_header("Content-Type", "text/csv; charset=utf-8")
            self.set_header("Content-Disposition", 'attachment; filename="usage.csv"')
            rows = [r async for r in self.services.usage.admin_export(query)]
            for r in await usage_rows(self.services, rows):
                r["credits"] = fmt_credits(r.get("credits", 0))
            return self.finish(csv_text(rows, USAGE_CSV_FIELDS))
        rows, more = await self.services.usage.admin_page(
            query, limit=self.int_argument("limit", 50, low=1, high=1000),
            skip=self.int_argument("skip", 0, low=0, high=10_000_000))
        totals = await self.services.usage.admin_totals(query)
        for r in await usage_rows(self.services, rows):
            r["credits"] = to_credits(r.get("credits", 0))
            r.pop("user_id", None), r.pop("key_id", None)
        totals["credits"] = to_credits(totals["credits"])
        self.write_json({"object": "list", "data": rows, "has_more": more, "totals": totals})


async def overview_data(services, keepalive, *, days: int = 30) -> dict:
    now = utcnow()
    since_day = (now - dt.timedelta(days=days - 1)).strftime("%Y-%m-%d")
    data = await services.usage.overview(since_day=since_day)
    names = await usernames(services, [u for u, _ in data["top_users"]])
    return {
        "since": since_day,
        "by_day": [{"day": d, **v} for d, v in sorted(data["by_day"].items())],
        "top_models": [{"model": m, **v} for m, v in data["top_models"]],
        "top_users": [{"username": names.get(u, str(u)), **v} for u, v in data["top_users"]],
        "upstreams": await services.usage.upstream_health(since=now - dt.timedelta(hours=24)),
        "open_streams": keepalive.open_streams,
        "rows": data["rows"],
    }


class OverviewAdminApiHandler(AdminApiHandler):
    async def get(self) -> None:
        data = await overview_data(self.services, self.application.settings["keepalive"])
        data.pop("rows")
        for group in ("by_day", "top_models", "top_users"):
            for row in data[group]:
                row["credits"] = to_credits(row["credits"])
        self.write_json(data)


class SignupSettingsAdminApiHandler(AdminApiHandler):
    async def get(self) -> None:
        current = await self.services.site.signup()
        self.write_json({**current, "credits": to_credits(current["credits"])})

    async def put(self, *_args) -> None:
        body = self.json_body()
        before, after = await self.services.site.set_signup(mode=body.get("mode"), credits=body.get("credits", 0),
                                                            invite_code=body.get("invite_code", ""))
        hide = lambda d: {**d, "credits": fmt_credits(d["credits"]), "invite_code": "set" if d["invite_code"] else ""}  # noqa: E731
        await self.audit("settings.signup", "signup", before=hide(before), after=hide(after))
        self.write_json({**after, "credits": to_credits(after["credits"])})

    patch = put


routes = [
    (r"/admin/api/keys/?", KeysAdminApiHandler),
    (r"/admin/api/topup-codes/?", TopupCodesListAdminApiHandler),
    (r"/admin/api/topup-codes/([^/]+)/void/?", TopupCodeVoidAdminApiHandler),
    (r"/admin/api/usage/?", UsageFilteredAdminApiHandler),
    (r"/admin/api/overview/?", OverviewAdminApiHandler),
    (r"/admin/api/settings/signup/?", SignupSettingsAdminApiHandler),
]
