"""A controller process as systemd runs it, and the systemd side of sd_notify (for tests)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.replay_helpers import write_config

ROOT = Path(__file__).resolve().parents[1]


class NotifySocket:
    """The systemd side of sd_notify: a unix datagram socket collecting messages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(x.split("=", 1) for x in data.decode().splitlines() if "=" in x)
            self.messages.append((time.monotonic(), fields))

    def wait_for(self, key: str, value: str | None = None, timeout: float = 15.0) -> dict:
        end = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < end:
            for _, msg in self.messages[seen:]:
                if key in msg and (value is None or msg[key] == value):
                    return msg
            time.sleep(0.02)
        raise AssertionError(f"no {key}={value} in {self.messages}")

    def count(self, key: str) -> int:
        return sum(1 for _, m in self.messages if key in m)

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()


class Controller:
    def __init__(self, tmp: Path, cfg: dict, watchdog_usec: int = 400_000) -> None:
        self.tmp = tmp
        self.cfg = cfg
        tmp.mkdir(parents=True, exist_ok=True)
        self.config_path = write_config(tmp / "config.yml", cfg)
        self.notify = NotifySocket(tmp / "notify.sock")
        self.stderr_path = tmp / "stderr.log"
        env = dict(os.environ)
        env.update(
            NOTIFY_SOCKET=str(self.notify.path),
            WATCHDOG_USEC=str(watchdog_usec),
            JOURNAL_STREAM="8:12345",
            PYTHONPATH=str(ROOT),
        )
        env.pop("WATCHDOG_PID", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dyssect_ctrl", "run", "--config", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=self.stderr_path.open("w"),
            env=env,
            cwd=tmp,
        )

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def wait_log(self, text: str, timeout: float = 10.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if text in self.stderr:
                return
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not logged:\n{self.stderr}")

    def kill(self) -> int:
        """SIGKILL, as a crash or the OOM killer would: no chance to clean up."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.notify.close()
        return self.proc.returncode

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.notify.close()
        return self.proc.returncode
