"""A streamed call shows its cost, in a form the SDKs ignore: an SSE comment before
message_stop (Anthropic), fields beside `usage` in the final chunk / event (OpenAI)."""
from __future__ import annotations

import json
from decimal import Decimal

import anthropic
import httpx
import openai


def micro(credits: str) -> int:
    return int(Decimal(credits) * 1_000_000)


def test_anthropic_stream_has_a_cost_comment_before_message_stop(gateway):
    user, key = gateway.user_with_key()
    before = sum(gateway.micro_balance(user))
    with httpx.stream("POST", gateway.url + "/v1/messages", headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
                      json={"model": "claude-sonnet-4-6", "max_tokens": 100, "stream": True,
                            "messages": [{"role": "user", "content": "hi"}]}, timeout=20) as r:
        lines = [line for line in r.iter_lines() if line]
    used = [line for line in lines if line.startswith(": cheaplm-credits-used=")]
    remaining = [line for line in lines if line.startswith(": cheaplm-credits-remaining=")]
    assert len(used) == 1 and len(remaining) == 1
    assert lines.index(used[0]) < lines.index("event: message_stop")
    after = sum(gateway.micro_balance(user))
    assert micro(used[0].split("=", 1)[1]) == before - after > 0
    assert micro(remaining[0].split("=", 1)[1]) == after
    # The official SDK reads the same stream unchanged.
    client = anthropic.Anthropic(api_key=key, base_url=gateway.url, max_retries=0)
    with client.messages.stream(model="claude-sonnet-4-6", max_tokens=100,
                                messages=[{"role": "user", "content": "hi"}]) as stream:
        assert stream.get_final_text() == "Hello from the fake upstream."


def test_chat_usage_chunk_has_the_cost(gateway):
    user, key = gateway.user_with_key()
    before = sum(gateway.micro_balance(user))
    client = openai.OpenAI(api_key=key, base_url=gateway.url + "/v1", max_retries=0)
    chunks = list(client.chat.completions.create(model="claude-sonnet-4-6", messages=[{"role": "user", "content": "hi"}],
                                                 stream=True, stream_options={"include_usage": True}))
    last = chunks[-1]
    assert last.usage.total_tokens == 175
    assert micro(last.model_extra["cheaplm_credits_used"]) == before - sum(gateway.micro_balance(user)) > 0


def test_responses_final_event_has_the_cost(gateway):
    user, key = gateway.user_with_key()
    before = sum(gateway.micro_balance(user))
    client = openai.OpenAI(api_key=key, base_url=gateway.url + "/v1", max_retries=0)
    with client.responses.stream(model="claude-sonnet-4-6", input="hi") as stream:
        final = stream.get_final_response()
    assert final.output_text == "Hello from the fake upstream."
    with httpx.stream("POST", gateway.url + "/v1/responses", headers={"Authorization": f"Bearer {key}"},
                      json={"model": "claude-sonnet-4-6", "input": "hi", "stream": True}, timeout=20) as r:
        last = json.loads([line for line in r.iter_lines() if line.startswith("data: ")][-1][6:])
    spent = before - sum(gateway.micro_balance(user))
    assert last["type"] == "response.completed" and last["response"]["usage"]["total_tokens"] == 175
    assert micro(last["response"]["cheaplm_credits_used"]) * 2 == spent > 0
