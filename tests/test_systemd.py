"""sd_notify over a real unix datagram socket, and journal-style logging."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from pathlib import Path

import pytest

from dyssect_ctrl.systemd import JournalFormatter, Notifier, setup_logging, under_journal


@pytest.fixture
def notify_socket(tmp_path: Path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(1.0)
    yield str(path), sock
    sock.close()


def recv(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.splitlines())


def test_ready_status_and_stopping_reach_the_socket(notify_socket) -> None:
    path, sock = notify_socket
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.ready("W=1 E=0")
    assert recv(sock) == {"READY": "1", "STATUS": "W=1 E=0"}
    assert n.status("waiting for data plane")
    assert recv(sock) == {"STATUS": "waiting for data plane"}
    assert n.reloading()
    msg = recv(sock)
    assert msg["RELOADING"] == "1" and int(msg["MONOTONIC_USEC"]) > 0
    assert n.stopping()
    assert recv(sock) == {"STOPPING": "1"}
    n.close()


def test_abstract_socket_address() -> None:
    name = f"dyssect-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(1.0)
    try:
        n = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert n.ready()
        assert recv(sock) == {"READY": "1"}
    finally:
        sock.close()


def test_watchdog_is_rate_limited_to_an_eighth_interval(notify_socket) -> None:
    path, sock = notify_socket
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"})
    assert n.watchdog_s == 4.0
    assert n.watchdog(now=100.0)
    assert recv(sock) == {"WATCHDOG": "1"}
    assert not n.watchdog(now=100.45)  # under 0.5 s (an eighth of 4 s) since the last ping
    assert n.watchdog(now=100.51)
    assert recv(sock) == {"WATCHDOG": "1"}


def test_watchdog_for_another_pid_or_without_interval_is_not_sent(notify_socket) -> None:
    path, _ = notify_socket
    other = Notifier(
        {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    )
    assert other.watchdog_s is None
    assert not other.watchdog()
    assert not Notifier({"NOTIFY_SOCKET": path}).watchdog()


def test_without_systemd_nothing_is_sent() -> None:
    n = Notifier({})
    assert not n.enabled
    assert not n.ready()
    assert not n.watchdog()


def test_a_vanished_socket_is_not_fatal(tmp_path: Path) -> None:
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert n.enabled
    assert not n.ready()


def test_journal_formatter_prefixes_every_line_with_the_priority() -> None:
    fmt = JournalFormatter("%(message)s")

    def line(level: int, msg: str) -> str:
        return fmt.format(logging.LogRecord("x", level, __file__, 1, msg, None, None))

    assert line(logging.ERROR, "bad") == "<3>bad"
    assert line(logging.WARNING, "hm") == "<4>hm"
    assert line(logging.INFO, "a\nb") == "<6>a\n<6>b"
    assert line(logging.DEBUG, "d") == "<7>d"


def test_setup_logging_uses_priorities_only_under_the_journal(capsys) -> None:
    assert under_journal({"JOURNAL_STREAM": "8:1234"})
    assert not under_journal({})
    setup_logging("warning", {"JOURNAL_STREAM": "8:1234"})
    logging.getLogger("t").warning("careful")
    logging.getLogger("t").info("hidden")
    err = capsys.readouterr().err
    assert "<4>t: careful" in err
    assert "hidden" not in err
    setup_logging("info", {})
    logging.getLogger("t").info("plain")
    err = capsys.readouterr().err
    assert " INFO t: plain" in err and "<6>" not in err
