"""systemd integration without a dependency: sd_notify over $NOTIFY_SOCKET and journal logging.

sd_notify is one datagram of "KEY=value" lines to the unix socket systemd names in NOTIFY_SOCKET
(a leading '@' means the abstract namespace). Under systemd (JOURNAL_STREAM set) log lines go to
stderr with a "<N>" syslog priority prefix, which journald turns into the entry's priority.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)

# syslog priorities journald understands as a "<N>" line prefix.
_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class Notifier:
    """Sends sd_notify messages; does nothing when the process was not started by systemd."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_s = _watchdog_interval(env)
        self._sock: socket.socket | None = None
        self._last_ping = -1e18
        if self.address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, **fields: str | int) -> bool:
        """Send KEY=value lines (e.g. READY=1, STATUS=...); False when nothing could be sent."""
        if self._sock is None or self.address is None:
            return False
        text = "\n".join(f"{key}={value}" for key, value in fields.items())
        try:
            self._sock.sendto(text.encode(), self.address)
        except OSError as e:
            # systemd gone or the socket full: never fatal for the controller.
            log.debug("sd_notify failed: %s", e)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        fields: dict[str, str | int] = {"READY": 1}
        if status is not None:
            fields["STATUS"] = status
        return self.notify(**fields)

    def status(self, text: str) -> bool:
        return self.notify(STATUS=text)

    def reloading(self) -> bool:
        # MONOTONIC_USEC lets Type=notify-reload units match the reload to this message.
        return self.notify(
            RELOADING=1, MONOTONIC_USEC=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        )

    def stopping(self) -> bool:
        return self.notify(STOPPING=1)

    def watchdog(self, now: float | None = None) -> bool:
        """WATCHDOG=1, at most every eighth of the watchdog interval (systemd asks for < 1/2).

        An eighth leaves room for the loop's own tick jitter while keeping the traffic small.
        """
        if self.watchdog_s is None:
            return False
        now = time.monotonic() if now is None else now
        if now - self._last_ping < self.watchdog_s / 8:
            return False
        self._last_ping = now
        return self.notify(WATCHDOG=1)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _address(value: str) -> str | None:
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None  # vsock and other forms are not for us


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None  # the watchdog is meant for another process
    return int(usec) / 1e6


class JournalFormatter(logging.Formatter):
    """Prefixes each line with the syslog priority; journald adds time and unit itself."""

    def format(self, record: logging.LogRecord) -> str:
        prio = _PRIORITY.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)
        text = super().format(record)
        return "\n".join(f"<{prio}>{line}" for line in text.splitlines() or [""])


def under_journal(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return bool(env.get("JOURNAL_STREAM"))


def setup_logging(level: str = "info", environ: Mapping[str, str] | None = None) -> None:
    """Root logging to stderr: priority-prefixed under systemd, timestamped otherwise."""
    handler = logging.StreamHandler(sys.stderr)
    if under_journal(environ):
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    set_level(level)


def set_level(level: str) -> None:
    logging.getLogger().setLevel(getattr(logging, level.upper()))
