"""The relay service, driven directly: a real fake upstream over HTTP, an in-memory client
(the sink), the embedded store, no gateway server. What a billed call charges, records and
writes, however it ends."""
from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass

import pytest

import app as app_module
from services.config import Settings
from services.core.errors import GatewayError
from services.core.money import cost_micro
from services.core.types import Principal
from services.gateway.relay import RelayService
from services.protocols.anthropic import AnthropicPassthrough, prepare_messages
from services.protocols.openai_chat.adapter import ChatAdapter
from services.protocols.openai_chat.request import chat_model, prepare_chat
from tests.fake_upstream import FakeUpstream, Scenario

CREDITS = 100_000_000  # micro-credits the test user starts with (100 credits)
MODEL = "claude-sonnet-4"


class MemorySink:
    """An in-memory client. `close_after=n` hangs up right after the n-th write."""

    def __init__(self, *, close_after: int | None = None) -> None:
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.heartbeat: bytes | None = None
        self.writes: list[bytes] = []
        self.closed = False
        self._close_after = close_after
        self._callbacks: list = []

    def start(self, status, headers, *, heartbeat=None) -> None:
        self.status, self.headers, self.heartbeat = status, dict(headers), heartbeat

    def write(self, data: bytes):
        if self.closed:
            raise ConnectionResetError("the client has gone")
        self.writes.append(data)
        if self._close_after is not None and len(self.writes) >= self._close_after:
            self.close()
        return asyncio.sleep(0)

    def on_close(self, callback) -> None:
        self._callbacks.append(callback)
        if self.closed:
            self.close()

    def close(self) -> None:
        self.closed = True
        while self._callbacks:
            self._callbacks.pop(0)()

    @property
    def body(self) -> bytes:
        return b"".join(self.writes)


@dataclass
class Env:
    """The services on a fresh embedded store, a user with CREDITS, their key's principal."""

    services: app_module.Services
    fake: FakeUpstream
    principal: Principal

    async def call(self, request, adapter, sink, *, relay: RelayService | None = None):
        relay = relay or self.services.relay
        return await relay.relay(self.principal, request, adapter, sink, request_id="req_test",
                                 endpoint="messages", client_headers={})

    async def account(self) -> tuple[int, int, list]:
        """(balance, held, hold entries) straight from the user document."""
        doc = await self.services.db.users.find_one({"_id": self.principal.user_id})
        return doc["balance"], doc["held"], doc["holds"]

    async def records(self) -> list[dict]:
        return await self.services.usage.recent(user_id=self.principal.user_id)

    async def ledger(self) -> list[dict]:
        return await self.services.billing.ledger(self.principal.user_id)


@contextlib.asynccontextmanager
async def relay_env(**settings):
    fake = FakeUpstream()
    await fake.start()
    config = Settings.from_env({}, mongodb_uri="memory://", upstream_base_url=fake.base_url,
                               upstream_api_key=fake.api_key, **settings)
    db_client, db = app_module.dbmod.connect(config)
    services = await app_module.build_services(config, db=db)
    try:
        user = await services.users.create("relayuser", "password-123")
        await services.billing.adjust(user["_id"], CREDITS // 1_000_000)
        raw_key, _ = await services.keys.create(user["_id"], "relay key")
        yield Env(services, fake, await services.keys.authenticate(raw_key))
    finally:
        await services.http_client.aclose()
        db_client.close()
        await fake.stop()


def run(scenario, **settings):
    """Run `scenario(env)` on a fresh environment and return its result."""
    async def main():
        async with relay_env(**settings) as env:
            return await scenario(env)
    return asyncio.run(main())


def messages(env: Env, *, stream: bool):
    body = {"model": MODEL, "max_tokens": 200, "stream": stream, "messages": [{"role": "user", "content": "Hi"}]}
    return prepare_messages(json.dumps(body).encode(), env.services.catalog), AnthropicPassthrough()


def chat(env: Env, *, stream: bool):
    body = {"model": MODEL, "max_tokens": 200, "stream": stream, "messages": [{"role": "user", "content": "Hi"}]}
    model, thinking = chat_model(body, env.services.catalog)
    request, plan = prepare_chat(body, model, force_thinking=thinking)
    return request, ChatAdapter(plan)


PROTOCOLS = [pytest.param(messages, id="anthropic"), pytest.param(chat, id="openai-chat")]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_success_charges_tokens_times_price_exactly(stream):
    """A completed call costs its tokens × the model's price exactly: one usage record, one
    ledger entry, nothing left held, and the answer with the credit headers (whole answers)."""
    async def scenario(env: Env):
        sink = MemorySink()
        receipt = await env.call(*messages(env, stream=stream), sink)
        return receipt, sink, await env.account(), await env.records(), await env.ledger()

    receipt, sink, account, records, ledger = run(scenario)
    cost = 175 * 130_000 // 1000  # the fake's 25 + 150 tokens at 0.13 credits per 1K
    assert (receipt.cost, receipt.status, receipt.balance) == (cost, 200, CREDITS - cost)
    assert account == (CREDITS - cost, 0, [])
    assert [(r["status"], r["total_tokens"], r["credits"], r["stream"]) for r in records] == [(200, 175, cost, stream)]
    assert (ledger[0]["kind"], ledger[0]["amount"], ledger[0]["balance_after"]) == ("usage", -cost, CREDITS - cost)
    assert sink.status == 200 and sink.headers["request-id"] == "req_fake_1"
    if stream:
        assert sink.headers["Content-Type"].startswith("text/event-stream") and sink.heartbeat
        assert sink.body.rstrip().endswith(b'data: {"type":"message_stop"}')
    else:
        assert sink.headers["x-cheaplm-credits-used"] == "0.02275"
        assert sink.headers["x-cheaplm-credits-remaining"] == "99.97725"
        assert json.loads(sink.body)["usage"]["output_tokens"] == 150


@pytest.mark.parametrize(("upstream_status", "status"), [(529, 529), (500, 502), (401, 502), (429, 429)])
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_upstream_error_before_the_first_byte_charges_nothing(upstream_status, status, stream):
    """An upstream that refuses the call raises the mapped error; the sink is untouched, the
    hold released, nothing charged, and the record says what happened."""
    async def scenario(env: Env):
        env.fake.enqueue(Scenario(status=upstream_status))
        sink = MemorySink()
        with pytest.raises(GatewayError) as info:
            await env.call(*messages(env, stream=stream), sink)
        return info.value, sink, await env.account(), await env.records(), await env.ledger()

    err, sink, account, records, ledger = run(scenario)
    assert err.status == status
    assert sink.status is None and sink.writes == []
    assert account == (CREDITS, 0, [])
    assert [(r["status"], r["credits"]) for r in records] == [(status, 0)]
    assert [e["kind"] for e in ledger] == ["adjustment"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(("scenario_", "settings", "frame"), [
    pytest.param(Scenario(chunks=6, error_after=2), {}, b"overloaded_error", id="error-event"),
    pytest.param(Scenario(chunks=3, delay=5), {"upstream_idle_timeout": 0.3}, b"stopped responding",
                 id="silent-upstream"),
])
def test_error_mid_stream_is_reported_in_band_and_recorded(protocol, scenario_, settings, frame):
    """After the 200, an upstream failure becomes an error event in the client's protocol,
    the record says 502 and keeps the tokens produced (the first usage counts), and the call
    costs nothing (charge_waived)."""
    async def scenario(env: Env):
        env.fake.enqueue(scenario_)
        sink = MemorySink()
        receipt = await env.call(*protocol(env, stream=True), sink)
        return receipt, sink, await env.account(), await env.records()

    receipt, sink, account, records = run(scenario, **settings)
    assert sink.status == 200 and frame in sink.writes[-1] and b"error" in sink.writes[-1]
    assert (receipt.status, receipt.cost) == (502, 0)
    assert [(r["status"], r["total_tokens"], r["credits"], r.get("charge_waived")) for r in records] \
        == [(502, 26, 0, True)]  # message_start's 25 input + 1 output tokens, recorded, not charged
    assert account == (CREDITS, 0, [])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_client_gone_mid_stream_cancels_upstream_and_bills_what_was_produced(protocol):
    """A client that hangs up mid-stream stops the upstream call at once; the record says 499
    and the call is billed for the input and the output streamed so far; nothing stays held."""
    async def scenario(env: Env):
        env.fake.enqueue(Scenario(chunks=200, delay=0.01))
        sink = MemorySink(close_after=8)
        receipt = await env.call(*protocol(env, stream=True), sink)
        upstream = env.fake.requests[-1]
        await asyncio.wait_for(upstream.done.wait(), 10)
        return receipt, upstream, await env.account(), await env.records()

    receipt, upstream, account, records = run(scenario)
    assert upstream.disconnected and not upstream.finished and upstream.events_sent < 100
    [record] = records
    assert record["status"] == 499 and record["input_tokens"] == 25 and 1 <= record["output_tokens"] < 150
    assert (receipt.status, receipt.cost) == (499, record["credits"])
    assert record["credits"] == cost_micro(record["total_tokens"], 130_000)
    assert account == (CREDITS - receipt.cost, 0, [])


class GatedBilling:
    """The real billing service, with settlement held at a gate the test opens."""

    def __init__(self, billing) -> None:
        self._billing = billing
        self.entered, self.opened, self.settled = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self.settlements = 0

    async def hold(self, *args, **kwargs):
        return await self._billing.hold(*args, **kwargs)

    async def settle(self, hold, record):
        self.settlements += 1
        self.entered.set()
        await self.opened.wait()
        receipt = await self._billing.settle(hold, record)
        self.settled.set()
        return receipt


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_cancelled_during_settlement_settles_exactly_once(stream):
    """Cancelling the call while it settles does not cut settlement short: it completes once,
    and the balance, the hold and the usage record agree."""
    async def scenario(env: Env):
        s = env.services
        gate = GatedBilling(s.billing)
        relay = RelayService(gate, s.upstream, s.ratelimit)
        task = asyncio.ensure_future(env.call(*messages(env, stream=stream), MemorySink(), relay=relay))
        await asyncio.wait_for(gate.entered.wait(), 10)
        task.cancel()
        gate.opened.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(gate.settled.wait(), 10)
        return gate.settlements, await env.account(), await env.records()

    settlements, account, records = run(scenario)
    cost = 175 * 130_000 // 1000
    assert settlements == 1
    assert account == (CREDITS - cost, 0, [])
    assert [(r["status"], r["credits"]) for r in records] == [(200, cost)]
