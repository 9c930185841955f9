"""progress: one progress bar for the long commands, on stderr and only on a terminal."""

from __future__ import annotations

import io

import pytest

from dyssect_ctrl.progress import progress_bar


def test_shown_on_a_terminal_with_the_eta_unless_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich: treat stderr as a terminal
    bar = progress_bar()
    assert not bar.disable and bar.console.stderr
    bar.console.file = out = io.StringIO()
    with bar:
        bar.add_task("bench", total=4, completed=1)
    assert "bench" in out.getvalue() and "1/4" in out.getvalue() and "ETA" in out.getvalue()
    assert progress_bar(quiet=True).disable


def test_off_when_stderr_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.setenv("TERM", "dumb")
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert progress_bar().disable
