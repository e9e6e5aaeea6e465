"""GET /admin/api/openapi.json: the OpenAPI 3.1 description of the management API.

Kept beside the handlers it describes; tests/test_admin_openapi.py runs schemathesis
against a live gateway with it, so a drift between the two fails the build."""
from __future__ import annotations

from handlers.base import ApiHandler

S = {"type": "string"}
I = {"type": "integer"}
N = {"type": "number"}
B = {"type": "boolean"}
NULL_S = {"type": ["string", "null"]}
NUM_TEXT = {"anyOf": [{"type": "number"}, {"type": "string"}]}
TIME = {"type": ["string", "null"], "description": "RFC 3339 time (UTC)"}


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(props: dict, required: tuple = (), **extra) -> dict:
    return {"type": "object", "properties": props, "required": list(required), **extra}


def listing(item: str, **more) -> dict:
    return obj({"object": {"const": "list"}, "data": {"type": "array", "items": ref(item)}, **more}, ("object", "data"))


ERRORS = {"400": "Bad input: `error.param` names the field.", "401": "Missing or wrong admin token.",
          "404": "No such object.", "409": "Conflicts with the current state.", "413": "Body too large."}


def op(summary: str, ok: dict | None, *, status: str = "200", errors=("400", "401"), body: dict | None = None,
       params: list | None = None, csv: bool = False) -> dict:
    content = {"application/json": {"schema": ok or {"type": "object"}}}
    if csv:
        content["text/csv"] = {"schema": S}
    out: dict = {"summary": summary, "responses": {status: {"description": "OK", "content": content}}}
    for code in errors:
        out["responses"][code] = {"description": ERRORS[code], "content": {"application/json": {"schema": ref("Error")}}}
    if body is not None:
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
        out["responses"].setdefault("400", {"description": ERRORS["400"],
                                            "content": {"application/json": {"schema": ref("Error")}}})
    if params:
        out["parameters"] = params
    return out


def q(name: str, schema: dict, description: str = "") -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def p(name: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}


PAGING = [q("limit", {"type": "integer", "minimum": 1, "maximum": 200}), q("skip", {"type": "integer", "minimum": 0})]
RATES = obj({k: NUM_TEXT for k in ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")},
            ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read"),
            description="Credits per 1K tokens of each kind")
MODEL_INPUT = obj({"id": S, "upstream_model": S, "display_name": S, "aliases": {"type": "array", "items": S},
                   "max_input": I, "max_output": I, "price_per_1k": NUM_TEXT,
                   "rates": {"anyOf": [RATES, {"type": "null"}]}, "features": {"type": "array", "items": S},
                   "enabled": B}, additionalProperties=False)
UPSTREAM_INPUT = obj({"name": S, "base_url": S, "api_key": S, "priority": I, "weight": I,
                      "models": {"type": "array", "items": S},
                      "beta_allowlist": {"anyOf": [{"type": "array", "items": S}, {"type": "null"}]}, "enabled": B},
                     additionalProperties=False)

SCHEMAS = {
    "Error": obj({"type": {"const": "error"}, "error": obj({"type": S, "message": S, "code": NULL_S, "param": NULL_S},
                                                          ("type", "message"))}, ("type", "error")),
    "Key": obj({"id": S, "name": S, "prefix": S, "frozen": B, "created_at": TIME, "last_used_at": TIME,
                "credit_cap": {"type": ["number", "null"]}, "expires_at": TIME,
                "allowed_models": {"type": "array", "items": S}, "rpm": I, "credits_used": N,
                "owner": NULL_S, "status": S, "revoked": B}, ("id", "name", "prefix", "frozen")),
    "User": obj({"id": S, "username": S, "email": NULL_S, "role": {"enum": ["admin", "user"]}, "frozen": B,
                 "credits": N, "held": N, "rpm": I, "created_at": TIME, "keys": {"type": "array", "items": ref("Key")}},
                ("id", "username", "role", "frozen", "credits")),
    "Model": obj({"id": S, "upstream_model": S, "display_name": S, "aliases": {"type": "array", "items": S},
                  "max_input": I, "max_output": I, "price_per_1k": S,
                  "rates": {"anyOf": [obj({k: S for k in RATES["properties"]}), {"type": "null"}]},
                  "features": {"type": "array", "items": S}, "enabled": B, "price_rule": S},
                 ("id", "upstream_model", "max_input", "max_output", "price_per_1k", "enabled", "price_rule")),
    "Upstream": obj({"id": S, "name": S, "base_url": S, "api_key_hint": S, "priority": I, "weight": I,
                     "models": {"type": "array", "items": S}, "enabled": B,
                     "beta_allowlist": {"anyOf": [{"type": "array", "items": S}, {"type": "null"}]},
                     "health": obj({"state": {"enum": ["closed", "open", "half-open"]}, "requests": I, "failures": I,
                                    "last_error": NULL_S, "skipped_because": NULL_S})},
                    ("id", "name", "base_url", "api_key_hint", "priority", "weight", "enabled", "health")),
    "TopupCode": obj({"id": S, "prefix": S, "credits": S, "note": S,
                      "status": {"enum": ["unused", "redeemed", "void", "expired"]}, "created_at": TIME,
                      "created_by": NULL_S, "expires_at": TIME, "redeemed_by": NULL_S, "redeemed_at": TIME,
                      "voided_at": TIME}, ("id", "prefix", "credits", "status")),
    "Token": obj({"id": S, "name": S, "prefix": S, "created_by": NULL_S, "created_at": TIME, "last_used_at": TIME,
                  "revoked_at": TIME, "token": S}, ("id", "name", "prefix")),
    "AuditRecord": obj({"id": S, "actor": S, "action": S, "target": NULL_S, "before": {"type": ["object", "null"]},
                        "after": {"type": ["object", "null"]}, "at": TIME}, ("id", "actor", "action", "at")),
    "UsageRecord": obj({"request_id": S, "model": NULL_S, "status": {"type": ["integer", "string"]}, "credits": N,
                        "total_tokens": I, "upstream": NULL_S, "username": NULL_S}),
    "SignupSettings": obj({"mode": {"enum": ["open", "closed", "invite"]}, "credits": N, "invite_code": S},
                          ("mode", "credits")),
}

PATHS = {
    "/admin/api/users": {
        "get": op("Search users", listing("User", total=I), params=[
            q("q", S, "name or email contains"), q("sort", {"enum": ["created", "balance", "name"]}), *PAGING]),
        "post": op("Create a user (optionally with credits)", ref("User"), status="201", errors=("400", "401", "409"),
                   body=obj({"username": S, "password": S, "email": NULL_S, "credits": NUM_TEXT},
                            ("username", "password")))},
    "/admin/api/users/{username}": {
        "parameters": [p("username")],
        "get": op("A user with keys", ref("User"), errors=("401", "404")),
        "patch": op("Freeze, set role, password or per-user rpm", ref("User"), errors=("400", "401", "404", "409"),
                    body=obj({"frozen": B, "role": {"enum": ["admin", "user"]}, "password": S, "rpm": I}))},
    "/admin/api/users/{username}/credits": {
        "parameters": [p("username")],
        "post": op("Add or remove credits (reason goes to the ledger)", obj({"username": S, "credits": N}),
                   errors=("400", "401", "404", "409"), body=obj({"amount": NUM_TEXT, "reason": S}, ("amount", "reason")))},
    "/admin/api/users/{username}/keys": {
        "parameters": [p("username")],
        "post": op("Create a key for the user (shown once)", ref("Key"), status="201", errors=("400", "401", "404"),
                   body=obj({"name": S, "credit_cap": {"type": ["number", "null"]}, "expires_at": NULL_S,
                             "allowed_models": {"type": "array", "items": S}, "rpm": {"type": ["integer", "null"]}}))},
    "/admin/api/users/{username}/reset-link": {
        "parameters": [p("username")],
        "post": op("A one-time password-reset link (valid 24 h, shown once)", obj({"username": S, "url": S},
                                                                                 ("username", "url")),
                   status="201", errors=("401", "404"))},
    "/admin/api/keys": {"get": op("Every key", listing("Key", total=I), params=[
        q("q", S), q("status", {"enum": ["active", "frozen", "revoked"]}), *PAGING])},
    "/admin/api/keys/{key_id}": {
        "parameters": [p("key_id")],
        "patch": op("Rename, freeze/unfreeze or revoke a key", ref("Key"), errors=("400", "401", "404", "409"),
                    body=obj({"name": S, "frozen": B, "revoked": B}))},
    "/admin/api/models": {
        "get": op("Every model, disabled ones too", listing("Model"), errors=("401",)),
        "post": op("Add a model", ref("Model"), status="201", errors=("400", "401", "409"), body=MODEL_INPUT)},
    "/admin/api/models/{model_id}": {
        "parameters": [p("model_id")],
        "get": op("One model", ref("Model"), errors=("401", "404")),
        "patch": op("Change a model (applies to the next request)", ref("Model"), errors=("400", "401", "404", "409"),
                    body=MODEL_INPUT),
        "delete": op("Delete a model", obj({"id": S, "deleted": B}), errors=("401", "404"))},
    "/admin/api/upstreams": {
        "get": op("The upstream pool with this process's health", listing("Upstream"), errors=("401",)),
        "post": op("Add an upstream", ref("Upstream"), status="201", errors=("400", "401", "409"), body=UPSTREAM_INPUT)},
    "/admin/api/upstreams/{upstream_id}": {
        "parameters": [p("upstream_id")],
        "get": op("One upstream", ref("Upstream"), errors=("401", "404")),
        "patch": op("Change an upstream", ref("Upstream"), errors=("400", "401", "404", "409"), body=UPSTREAM_INPUT),
        "delete": op("Delete an upstream", obj({"id": S, "deleted": B}), errors=("401", "404"))},
    "/admin/api/upstreams/{upstream_id}/test": {
        "parameters": [p("upstream_id")],
        "post": op("A one-token call to this upstream alone", obj({"ok": B, "status": {"type": ["integer", "null"]},
                                                                   "error": NULL_S, "model": S, "latency_ms": N}),
                   errors=("401", "404"))},
    "/admin/api/topup-codes": {
        "get": op("Codes (prefixes only)", listing("TopupCode", total=I), csv=True, params=[
            q("q", S), q("status", {"enum": ["unused", "redeemed", "void", "expired"]}),
            q("format", {"enum": ["json", "csv"]}), q("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
            q("skip", {"type": "integer", "minimum": 0})]),
        "post": op("Generate a batch (codes shown once)", obj({"codes": {"type": "array", "items": S}, "credits": N,
                                                               "note": S}, ("codes",)),
                   status="201", body=obj({"credits": NUM_TEXT, "count": I, "note": S, "expires_at": S}, ("credits",)))},
    "/admin/api/topup-codes/{code_id}/void": {
        "parameters": [p("code_id")],
        "post": op("Void an unredeemed code", ref("TopupCode"), errors=("401", "404", "409"))},
    "/admin/api/usage": {"get": op("Requests, filtered, with totals", listing(
        "UsageRecord", has_more=B, totals=obj({"requests": I, "total_tokens": I, "credits": N, "errors": I})),
        csv=True, errors=("400", "401", "404"), params=[
            q("username", S), q("key_id", S), q("model", S), q("upstream", S),
            q("status", {"anyOf": [{"enum": ["ok", "error", "abandoned"]}, {"type": "string", "pattern": "^[0-9]{3}$"}]}),
            q("since", {"type": "string", "format": "date"}), q("until", {"type": "string", "format": "date"}),
            q("format", {"enum": ["json", "csv"]}), q("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
            q("skip", {"type": "integer", "minimum": 0})])},
    "/admin/api/overview": {"get": op("Figures for the overview page", obj({
        "since": S, "by_day": {"type": "array"}, "top_models": {"type": "array"}, "top_users": {"type": "array"},
        "upstreams": {"type": "array"}, "open_streams": I}), errors=("401",))},
    "/admin/api/settings/signup": {
        "get": op("Sign-up settings", ref("SignupSettings"), errors=("401",)),
        "put": op("Change sign-up settings", ref("SignupSettings"),
                  body=obj({"mode": {"enum": ["open", "closed", "invite"]}, "credits": NUM_TEXT, "invite_code": S},
                           ("mode",)))},
    "/admin/api/tokens": {
        "get": op("Named admin API tokens", listing("Token"), errors=("401",)),
        "post": op("Create a token (shown once)", ref("Token"), status="201", body=obj({"name": S}, ("name",)))},
    "/admin/api/tokens/{token_id}": {
        "parameters": [p("token_id")],
        "delete": op("Revoke a token", ref("Token"), errors=("401", "404"))},
    "/admin/api/audit": {"get": op("Audit records, newest first", listing("AuditRecord"), params=[
        q("actor", S), q("action", S, "prefix, e.g. user."), q("target", S),
        q("limit", {"type": "integer", "minimum": 1, "maximum": 500}), q("skip", {"type": "integer", "minimum": 0})])},
}

DOCUMENT = {
    "openapi": "3.1.0",
    "info": {"title": "CheapLM management API", "version": "1",
             "description": "Everything the /admin pages do. Authenticate with `Authorization: Bearer <token>` "
                            "(ADMIN_API_TOKEN or a named admin API token). Errors: "
                            '`{"type": "error", "error": {"type", "message", "code", "param"}}`. Every change '
                            "writes an audit record."},
    "security": [{"bearer": []}],
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}, "schemas": SCHEMAS},
    "paths": PATHS,
}


class OpenApiHandler(ApiHandler):
    """The document itself is public: it holds no secrets."""

    async def check_caller(self) -> None:
        """Open to anyone, without a key."""

    def get(self) -> None:
        self.write_json({**DOCUMENT, "servers": [{"url": f"{self.request.protocol}://{self.request.host}"}]})


routes = [(r"/admin/api/openapi\.json", OpenApiHandler)]
