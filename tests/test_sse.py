"""SSE re-framing and the passthrough's usage parsing, whatever the upstream's framing and
however its bytes are cut into chunks."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.protocols.anthropic import AnthropicPassthrough
from services.protocols.sse import EventBuffer

EVENTS = [
    b'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":25,"output_tokens":1}}}',
    b'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"type":"text_delta","text":"Hi"}}',
    b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":150}}',
    b'event: message_stop\ndata: {"type":"message_stop"}',
]


def cut(wire: bytes, cuts: list[int]) -> list[bytes]:
    pieces, at = [], 0
    for n in cuts:
        pieces.append(wire[at:at + n])
        at += n
    return [p for p in [*pieces, wire[at:]] if p]


@settings(max_examples=200, deadline=None)
@given(crlf=st.booleans(), cuts=st.lists(st.integers(1, 30), max_size=40))
def test_events_are_the_same_however_the_stream_is_cut(crlf, cuts):
    wire = b"".join(e + b"\n\n" for e in EVENTS)
    if crlf:
        wire = wire.replace(b"\n", b"\r\n")
    buffer = EventBuffer()
    events = [e for piece in cut(wire, cuts) for e in buffer.feed(piece)]
    assert events == [e + b"\n\n" for e in EVENTS]


@settings(max_examples=100, deadline=None)
@given(framing=st.sampled_from(["standard", "id first", "no space", "data only", "crlf"]),
       cuts=st.lists(st.integers(1, 40), max_size=30))
def test_usage_and_the_end_are_read_in_any_framing(framing, cuts):
    """message_start / message_delta / message_stop are recognised however an upstream frames
    them, so usage is billed and the stream counts as finished."""
    frames = []
    for i, e in enumerate(EVENTS):
        name_line, data_line = e.split(b"\n")
        frames.append({"standard": e, "id first": b"id: %d\n%s" % (i, e),
                       "no space": name_line.replace(b"event: ", b"event:") + b"\n" + data_line,
                       "data only": data_line, "crlf": e.replace(b"\n", b"\r\n")}[framing])
    sep = b"\r\n\r\n" if framing == "crlf" else b"\n\n"
    wire = b"".join(f + sep for f in frames)
    adapter, buffer = AnthropicPassthrough(), EventBuffer()
    for piece in cut(wire, cuts):
        adapter.events(buffer.feed(piece))
    tracker = adapter.tracker
    assert (tracker.usage.input_tokens, tracker.usage.output_tokens) == (25, 150)
    assert tracker.done and tracker.final_usage
