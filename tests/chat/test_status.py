"""The status line's holds and a running command's live output (server.chat._status)."""

from __future__ import annotations

import io

from server.chat._status import PARTIAL_LIMIT, SHOWN_LINE, THINKING, CommandOutput, StatusLine


def test_overlapping_readers_hold_the_status_line_until_the_last_is_done() -> None:
    out = io.StringIO()
    status = StatusLine(out, lambda: 80, clock=lambda: 0.0)
    status.show(THINKING)
    status.hold()  # the chat prompt, being closed
    status.hold()  # the approval prompt, waiting for it
    status.release()  # the chat prompt is gone; the approval prompt is still up
    status.draw()
    assert out.getvalue() == ""
    status.release()
    status.draw()
    assert out.getvalue().endswith("thinking (0.0 s)")
    status.hold("asking")
    status.hold("asking")  # a state, not a count: one release ends it
    status.release("asking")
    status.release("asking")  # more releases than holds are ignored
    status.hold()
    status.release()
    status.draw()
    assert out.getvalue().count("thinking") == 2


def test_output_without_newlines_is_kept_bounded() -> None:
    output = CommandOutput()
    for _ in range(1000):  # 1 MB on one line
        assert output.add(b"x" * 1000) == []
    assert len(output._partial) == PARTIAL_LIMIT
    [line] = output.end()
    assert line == "x" * (SHOWN_LINE - 3) + "..."  # what the unbounded line showed
    assert output._partial == ""


def test_a_progress_bar_of_carriage_returns_starts_its_line_over() -> None:
    output = CommandOutput()
    for percent in range(10_000):
        assert output.add(f"\rprogress {percent % 100:3d}%".encode()) == []
    assert output._partial == "progress  99%"
    assert output.add(b"\r\ndone\r") == ["progress  99%"]  # \r\n ends the line
    assert output.add(b"\n") == ["done"]  # a \r\n split across chunks
    assert output.add(b"one\r\rtwo\r") == []
    assert output.end() == ["two"]


def test_lines_are_still_cut_escaped_and_decoded_across_chunks() -> None:
    output = CommandOutput(limit=2)
    assert output.add(b"a\x1b[2J\tb\nhalf ") == ["a\\x1b[2J\tb"]
    assert output.add("é".encode()[:1]) == []
    assert output.add("é".encode()[1:] + b"\nlast\nmore\n") == [
        "half é",
        "... (more output: the result shows how it ends)",
    ]
    assert output.end() == []
