"""SSEDecoder: linear work however the stream is split, line limits, split line ends.

(Its basic cases, arbitrary splits of a small stream, are in test_openai.py.)
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from agents._providers import _openai_response
from agents._providers._openai_response import SSEDecoder


class CountingPattern:
    """Stands for the decoder's line-end pattern and counts the characters it scans."""

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self._pattern = pattern
        self.scanned = 0

    def finditer(self, text: str, pos: int = 0) -> Iterator[re.Match[str]]:
        self.scanned += len(text) - pos
        return self._pattern.finditer(text, pos)

    def split(self, text: str) -> list[str]:
        self.scanned += len(text)
        return self._pattern.split(text)


@pytest.fixture
def eol(monkeypatch: pytest.MonkeyPatch) -> CountingPattern:
    counting = CountingPattern(_openai_response._EOL)
    monkeypatch.setattr(_openai_response, "_EOL", counting)
    return counting


def feed_in_pieces(decoder: SSEDecoder, data: bytes, size: int) -> list[str]:
    out: list[str] = []
    for i in range(0, len(data), size):
        out += decoder.feed(data[i : i + size])
    return out


def test_a_long_line_in_small_reads_is_scanned_once(eol: CountingPattern) -> None:
    # The work, not the time: each character is looked at for a line end once.
    # Rescanning the pending line on every read (as it once did) scans this line
    # ~500 times over (a 4 MiB line in 1 KiB reads took a minute of CPU).
    line = b"data: " + b"A" * (64 * 1024)
    decoder = SSEDecoder()
    assert feed_in_pieces(decoder, line, 64) == []
    assert decoder.feed(b"\n\n") == ["A" * (64 * 1024)]
    assert len(line) <= eol.scanned <= len(line) + 2


def test_many_events_in_one_read_are_scanned_once(eol: CountingPattern) -> None:
    data = b"".join(f"data: {i}\n\n".encode() for i in range(1000))
    assert SSEDecoder().feed(data) == [str(i) for i in range(1000)]
    assert eol.scanned == len(data)


def test_a_line_is_refused_as_soon_as_it_is_over_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_openai_response, "MAX_LINE", 1000)
    decoder = SSEDecoder()
    assert feed_in_pieces(decoder, b"data: " + b"A" * 994, 100) == []  # 1000: not over
    with pytest.raises(ValueError, match="line longer than 1000"):
        decoder.feed(b"A")  # no line end in sight: refused now, not buffered on


def test_a_whole_line_over_the_limit_in_one_read_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_openai_response, "MAX_LINE", 1000)
    assert SSEDecoder().feed(b"data: " + b"A" * 994 + b"\n\n") == ["A" * 994]
    with pytest.raises(ValueError, match="line longer than 1000"):
        SSEDecoder().feed(b"data: " + b"A" * 995 + b"\n\n")
    decoder = SSEDecoder()
    decoder.feed(b"data: " + b"A" * 500)
    with pytest.raises(ValueError, match="line longer than 1000"):
        decoder.feed(b"A" * 501 + b"\n\n")


def test_an_event_of_many_short_data_lines_is_bounded_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_openai_response, "MAX_LINE", 1000)
    decoder = SSEDecoder()
    with pytest.raises(ValueError, match="event longer than 1000"):
        for _ in range(1000):
            decoder.feed(b"data: xx\n")  # never the blank line that ends the event


@pytest.mark.parametrize(
    ("reads", "expected"),
    [
        pytest.param([b"data: a\r", b"\n", b"\r\n"], "a", id="CR | LF"),
        pytest.param([b"data: a\r", b"", b"\n\r", b"\n"], "a", id="CR | empty read | LF"),
        pytest.param(
            [b"data: \xc3\xa9\r", b"\nda", b"ta: b\r", b"\r"], "é\nb", id="two data lines"
        ),
    ],
)
def test_a_crlf_split_between_reads_is_one_line_end(reads: list[bytes], expected: str) -> None:
    # Taken as two line ends, the "\n" would be a blank line: an event ended early.
    decoder = SSEDecoder()
    out = [payload for read in reads for payload in decoder.feed(read)]
    out += decoder.close()
    assert out == [expected]


def test_a_cr_split_from_a_multibyte_character_is_still_a_line_end() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\xc3") == []  # half of "é": nothing decided yet
    assert decoder.feed(b"\xa9\n") == []  # "é" is a line of its own (a field, ignored)
    assert decoder.feed(b"\n") == ["a"]


def test_an_event_ended_by_cr_at_the_end_of_a_read_is_delivered_at_once() -> None:
    # The last "\r" might be half of "\r\n", but either way the line is over: the
    # event need not wait for the next read (which may be the next event, seconds later).
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r\r") == ["a"]
    assert decoder.feed(b"\ndata: b\r\n\r\n") == ["b"]
    assert decoder.close() == []
