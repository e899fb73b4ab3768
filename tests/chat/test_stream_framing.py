"""Streams read as bytes and relayed a batch at a time: every SSE framing a provider may use, cut anywhere,
gives the client the same answer; the JSON fast path falls back wherever orjson is stricter than json."""

from __future__ import annotations

import json

import pytest

from llm_api import json_codec
from llm_api.providers.sse_client import EventSplitter
from tests.chat.conftest import guest_token, sdk
from tests.fakes.framed_sse_upstream import MODEL, FramedSSEUpstream
from tests.fakes.loopback import running


def _chunk(content: str | None = None, *, finish: str | None = None, **delta) -> bytes:
    if content is not None:
        delta["content"] = content
    return json.dumps(
        {
            "id": "chatcmpl-framed",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    ).encode()


_WORLD = _chunk("world")
_CUT = _WORLD.index(b', "created"') + 1  # between two members: the line end joining the lines is whitespace

# One answer in every framing the SSE specification allows, as a provider might send it.
MIXED_STREAM = (
    b": a comment before anything\n\n"
    + b"data: "
    + _chunk("", role="assistant")
    + b"\n\n"
    + b"data:"
    + _chunk("Hel")
    + b"\r\n\r\n"  # no space after the colon; CR LF
    + b"event: message\ndata: "
    + _chunk("lo")
    + b"\r\r"  # an event name; lone CR line ends
    + b"data: "
    + _chunk(", ")
    + b"\n: keep-alive\n\n"  # a comment inside an event
    + b"data: "
    + _WORLD[:_CUT]
    + b"\ndata: "
    + _WORLD[_CUT:]
    + b"\n\n"  # data over two lines
    + b"\n\n\n"  # stray blank lines
    + b"data: "
    + _chunk(finish="stop")
    + b"\n\n"
    + b"data: [DONE]\n\n"
)
EXPECTED_DATA = [
    _chunk("", role="assistant"),
    _chunk("Hel"),
    _chunk("lo"),
    _chunk(", "),
    _WORLD[:_CUT] + b"\n" + _WORLD[_CUT:],
    _chunk(finish="stop"),
    b"[DONE]",
]


def _split_at(data: bytes, *cuts: int) -> list[bytes]:
    edges = [0, *cuts, len(data)]
    return [data[start:end] for start, end in zip(edges, edges[1:], strict=False)]


def test_every_framing_is_read_whole_and_in_order():
    events = EventSplitter().feed(MIXED_STREAM)
    assert [data for _, data in events] == EXPECTED_DATA
    assert [name for name, _ in events] == [None, None, "message", None, None, None, None]


@pytest.mark.parametrize("cut", range(1, len(MIXED_STREAM)))
def test_a_stream_cut_anywhere_gives_the_same_events(cut):
    splitter = EventSplitter()
    events = [event for piece in _split_at(MIXED_STREAM, cut) for event in splitter.feed(piece)] + splitter.end()
    assert [data for _, data in events] == EXPECTED_DATA


def test_a_stream_fed_byte_by_byte_gives_the_same_events():
    splitter = EventSplitter()
    events = [event for offset in range(len(MIXED_STREAM)) for event in splitter.feed(MIXED_STREAM[offset : offset + 1])]
    assert [data for _, data in events] == EXPECTED_DATA


def test_the_last_event_counts_without_a_blank_line_after_it():
    splitter = EventSplitter()
    assert splitter.feed(b"data: one\n\ndata: two\r") == [(None, b"one")]
    assert splitter.end() == [(None, b"two")]


@pytest.mark.parametrize(
    "document, expected",
    [
        (b'{"a": "\\ud800"}', {"a": "\ud800"}),  # a lone surrogate: orjson refuses it, json reads it
        (b'{"a": 1e400}', {"a": float("inf")}),  # beyond a double
        (b'{"a": "caf\xe9"}', {"a": "caf\ufffd"}),  # not UTF-8: replaced, as the text of a provider always was
        (b'{"a": "\\u0000"}', {"a": "\x00"}),
    ],
)
def test_loads_takes_what_json_takes(document, expected):
    assert json_codec.loads(document) == expected


def test_loads_refuses_what_is_not_json():
    for document in (b"{not json", b"", b"[1,"):
        with pytest.raises(ValueError):
            json_codec.loads(document)


@pytest.mark.parametrize(
    "value, expected",
    [
        (
            {"text": "héllo \U0001f600", "n": [1, 2.5, None, True]},
            b'{"text":"h\xc3\xa9llo \xf0\x9f\x98\x80","n":[1,2.5,null,true]}',
        ),
        ({"text": "\ud800"}, b'{"text":"\\ud800"}'),  # a lone surrogate is escaped: still valid UTF-8
        ({1: "a"}, b'{"1":"a"}'),  # non-string keys, as json writes them
    ],
)
def test_dumps_writes_what_json_writes(value, expected):
    assert json_codec.dumps(value) == expected


@pytest.mark.parametrize(
    "pieces",
    [
        [MIXED_STREAM],  # all in one read
        _split_at(MIXED_STREAM, *range(7, len(MIXED_STREAM), 97)),  # cut mid-line, mid-CRLF...
        [MIXED_STREAM[i : i + 1] for i in range(len(MIXED_STREAM))][:60] + [MIXED_STREAM[60:]],  # byte by byte, then the rest
    ],
    ids=["one-read", "cut-every-97-bytes", "byte-by-byte"],
)
async def test_the_client_gets_one_answer_however_the_provider_frames_it(serve, pieces):
    async with running(FramedSSEUpstream(pieces, pause=0.002)) as upstream:
        server = await serve(VLLM_BASE_URL=f"{upstream.base_url}/v1", UPSTREAM_RETRIES=0)
        client = sdk(server, await guest_token(server))
        chunks = [
            chunk
            async for chunk in await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
            )
        ]
    assert "".join(choice.delta.content or "" for chunk in chunks for choice in chunk.choices) == "Hello, world"
    assert {chunk.id for chunk in chunks} == {"chatcmpl-framed"}
    assert {chunk.created for chunk in chunks} == {1700000000}
    assert {chunk.model for chunk in chunks} == {f"vllm/{MODEL}"}
    assert chunks[-1].choices[0].finish_reason == "stop"
