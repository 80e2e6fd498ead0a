"""``TaskOutputPrinter``: task output on the client's stdout/stderr, one task-id prefix per line."""

from __future__ import annotations

import pytest

from scaler.client.output import TaskOutputPrinter
from scaler.protocol.messages import LogStream, TaskLog

T1, T2 = b"\x01\x02", b"\xff\x00"


def test_each_line_is_prefixed_with_the_task_id(capsys: pytest.CaptureFixture[str]) -> None:
    printer = TaskOutputPrinter()
    printer.on_task_log(TaskLog(T1, LogStream.STDOUT, "hello\nworld\n"))
    printer.on_task_log(TaskLog(T2, LogStream.STDERR, "oops\n"))
    out, err = capsys.readouterr()
    assert out == "[0102] hello\n[0102] world\n"
    assert err == "[ff00] oops\n"


def test_a_line_in_pieces_gets_one_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    printer = TaskOutputPrinter()
    printer.on_task_log(TaskLog(T1, LogStream.STDOUT, "par"))
    printer.on_task_log(TaskLog(T2, LogStream.STDOUT, "other\n"))
    printer.on_task_log(TaskLog(T1, LogStream.STDOUT, "tial\nnext"))
    assert capsys.readouterr().out == "[ff00] other\n[0102] partial\n"
    printer.on_task_done(T1)
    assert capsys.readouterr().out == "[0102] next\n"
    printer.on_task_done(T1)
    assert capsys.readouterr().out == ""


def test_streams_are_kept_apart(capsys: pytest.CaptureFixture[str]) -> None:
    printer = TaskOutputPrinter()
    printer.on_task_log(TaskLog(T1, LogStream.STDOUT, "a"))
    printer.on_task_log(TaskLog(T1, LogStream.STDERR, "b\n"))
    printer.on_task_done(T1)
    out, err = capsys.readouterr()
    assert (out, err) == ("[0102] a\n", "[0102] b\n")


def test_dropped_output_is_told_where_it_is_missing(capsys: pytest.CaptureFixture[str]) -> None:
    printer = TaskOutputPrinter()
    printer.on_task_log(TaskLog(T1, LogStream.STDOUT, "cut sh"))
    printer.on_task_log(TaskLog(T1, LogStream.STDOUT, "ort\nnext\n", dropped_bytes=123456))
    printer.on_task_log(TaskLog(T1, LogStream.STDERR, "", dropped_bytes=7))
    out, err = capsys.readouterr()
    assert out == (
        "[0102] cut sh\n[0102] ... 123,456 bytes of output dropped (over the output limit)\n[0102] ort\n[0102] next\n"
    )
    assert err == "[0102] ... 7 bytes of output dropped (over the output limit)\n"
