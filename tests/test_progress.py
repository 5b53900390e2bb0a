"""The progress bar: live in a terminal, a line or two in a redirected log."""

from __future__ import annotations

import io
import sys
import time

import pytest

from torch_mbd import progress
from torch_mbd.progress import LOG_INTERVAL, progress_bar

pytest.importorskip("tqdm")


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _run(stream, monkeypatch, steps=60):
    monkeypatch.setattr(sys, "stderr", stream)
    with progress_bar(steps, "MBD plan") as bar:
        for k in range(steps):
            time.sleep(0.01)  # 0.6 s in all: a live bar (0.1 s between redraws) draws several times
            bar.update()
            bar.set_postfix(reward=f"{k:.4f}")  # as plan() and minimize() do every step
        interval = bar.mininterval
    return interval, stream.getvalue()


def test_a_redirected_log_gets_a_line_or_two_not_one_per_step(monkeypatch):
    interval, log = _run(io.StringIO(), monkeypatch)
    assert interval == LOG_INTERVAL
    assert log.count("\r") <= 3 and "MBD plan" in log  # the first draw and the closing clear


def test_a_terminal_gets_the_live_bar(monkeypatch):
    interval, screen = _run(_Terminal(), monkeypatch)
    assert interval < 1.0 and screen.count("\r") > 3  # tqdm's own default (0.1 s): redrawn as it goes


@pytest.mark.parametrize("stream", [None, object()])
def test_a_missing_or_odd_stderr_counts_as_no_terminal(stream):
    assert not progress._is_terminal(stream)
    assert progress._is_terminal(_Terminal())


def test_disabled_is_silent(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    with progress_bar(5, "x", enabled=False) as bar:
        bar.update()
    assert stream.getvalue() == ""
