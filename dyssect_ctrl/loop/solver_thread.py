"""Solves off the loop thread: one daemon thread each, and the record of a solve handed to it."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from dyssect_ctrl.dataplane.base import Reading
from dyssect_ctrl.model import Plan, PlanResult


class SolverThread:
    """One daemon thread running solves in order; a wedged solve cannot block exit."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._jobs: deque[tuple[Future[Any], Callable[[], Any]]] = deque()
        self.busy_since: float | None = None
        self._thread = threading.Thread(target=self._run, name="solver", daemon=True)
        self._closed = False
        self._thread.start()

    def submit(self, fn: Callable[[], Any]) -> Future[Any]:
        fut: Future[Any] = Future()
        with self._cv:
            self._jobs.append((fut, fn))
            self._cv.notify()
        return fut

    @property
    def busy(self) -> bool:
        with self._cv:
            return self.busy_since is not None or bool(self._jobs)

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._jobs and not self._closed:
                    self._cv.wait()
                if self._closed and not self._jobs:
                    return
                fut, fn = self._jobs.popleft()
                self.busy_since = time.monotonic()
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn())
                except BaseException as e:  # handed to the loop, which falls back
                    fut.set_exception(e)
            with self._cv:
                self.busy_since = None

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()


@dataclass
class Pending:
    """A solve handed to the solver thread."""

    mode: str
    future: Future[PlanResult]
    base: Plan  # the plan it starts from; stale once another plan is applied
    deadline: float  # monotonic
    reading: Reading
    loads: list[float]
    read_done: float  # perf_counter at the end of the stats read it plans on
