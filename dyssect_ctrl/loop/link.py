"""The connection to the data plane: connect with backoff, notice a loss, read and vet stats."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from dyssect_ctrl.dataplane.base import (
    DataplaneError,
    PipelineAbsent,
    Reading,
    SnapshotRejected,
    SnapshotValidator,
)
from dyssect_ctrl.loop.state import LoopState
from dyssect_ctrl.loop.status import Status
from dyssect_ctrl.model import Params

log = logging.getLogger("dyssect_ctrl.loop")

# Reconnect: retry on the next tick, then every second tick, so a restarted bessd is found
# within two short epochs of answering again.
RECONNECT_MAX_TICKS = 2


class Link:
    def __init__(self, st: LoopState, status: Status, on_lost: Callable[[], None]) -> None:
        self.st = st
        self.status = status
        self.on_lost = on_lost  # drops the solves planned on the session that is gone
        self.validator = SnapshotValidator(st.config.shards, st.config.core_count)
        self._retry_at_tick = 0
        self._failures = 0
        self._last_error = ""
        self._reject_reason = ""
        self._reject_streak = 0

    def connect(self) -> bool:
        """Connect (not before the backoff allows) and set the stats window; True when up."""
        st = self.st
        if st.loop_epoch < self._retry_at_tick:
            return False
        try:
            st.dataplane.connect()
        except DataplaneError as e:
            self._failures += 1
            self._retry_at_tick = st.loop_epoch + min(self._failures, RECONNECT_MAX_TICKS)
            text = str(e)
            st.state = (
                "pipeline absent" if isinstance(e, PipelineAbsent) else "waiting for data plane"
            )
            st.dataplane.health.reason = text
            # The first failure and every change are logged; repeats every 100 tries.
            if text != self._last_error or self._failures % 100 == 1:
                log.warning("data plane: %s (retrying)", text)
            self._last_error = text
            st.metrics.dataplane_errors.labels(
                kind="absent" if isinstance(e, PipelineAbsent) else "connect"
            ).inc()
            return False
        if not self.set_window():
            return False
        st.connected = True
        self._failures = 0
        self._last_error = ""
        self.validator.reset()
        st.counts["reconnects"] += 1
        st.metrics.reconnects.inc()
        st.metrics.connected.set(1)
        st.state = "running"
        log.info("data plane connected: %s", st.dataplane.describe())
        return True

    def set_window(self) -> bool:
        """The data plane's stats window is the short epoch; False when the link is lost."""
        try:
            self.st.dataplane.set_window(self.st.short_s)
        except DataplaneError as e:
            self.lost(e, "set_params")
            return False
        return True

    def lost(self, e: Exception, what: str) -> None:
        st = self.st
        st.connected = False
        st.dataplane.close()
        st.metrics.connected.set(0)
        st.metrics.dataplane_errors.labels(kind=what).inc()
        st.state = "waiting for data plane"
        self._failures = 0
        self._retry_at_tick = st.loop_epoch + 1
        self._last_error = str(e)
        st.dataplane.health.reason = str(e)
        log.error("data plane lost during %s: %s", what, e)
        self.on_lost()

    def read(self) -> Reading | None:
        """This epoch's stats, vetted and recorded; None when rejected or the link is lost."""
        st = self.st
        try:
            reading = st.dataplane.read()
        except SnapshotRejected as e:
            self._rejected(e)
            self.status.became_ready()
            return None
        except DataplaneError as e:
            self.lost(e, "read")
            return None
        try:
            self.validator.check(reading)
        except SnapshotRejected as e:
            self._rejected(e)
            self.status.became_ready()
            return None
        if not reading.fresh:  # a new connection's first window spans an unknown time
            st.service.observe(reading.busy, reading.tsc_hz)
        reading = dataclasses.replace(
            reading,
            snapshot=dataclasses.replace(reading.snapshot, params=self._params_of(reading)),
        )
        st.last_reading = reading
        self._reject_streak = 0
        snap = reading.snapshot
        st.last_loads = snap.loads()
        st.metrics.observe_dataplane(snap.drops, reading.packets_in, reading.packets_out)
        for reason, n in snap.drops.items():
            st.drops_total[reason] = st.drops_total.get(reason, 0) + n
        return reading

    def _params_of(self, reading: Reading) -> Params:
        """The snapshot is planned on (and logged) with the service times in force, except
        that a data plane that does not measure them (replay) keeps those its snapshot names."""
        params = self.st.params
        own = reading.snapshot.params
        if reading.tsc_hz > 0:
            return params
        return params.with_values(
            {
                "t_working_us": own.t_working_us or params.t_working_us,
                "t_offloading_us": own.t_offloading_us or params.t_offloading_us,
            }
        )

    def idle(self, reading: Reading) -> bool:
        """Let the data plane run until the next read; False when the link is lost."""
        try:
            self.st.dataplane.idle(reading)
        except DataplaneError as e:
            self.lost(e, "idle")
            return False
        return True

    def _rejected(self, e: SnapshotRejected) -> None:
        st = self.st
        st.counts["rejected"] += 1
        st.metrics.rejected.labels(reason=e.reason).inc()
        # Every rejection is counted; the log gets each new reason and then one in 100 repeats.
        self._reject_streak = self._reject_streak + 1 if e.reason == self._reject_reason else 1
        self._reject_reason = e.reason
        if self._reject_streak % 100 == 1:
            more = f" ({self._reject_streak} in a row)" if self._reject_streak > 1 else ""
            log.warning(
                "snapshot rejected, not planned on (epoch %d)%s: %s", st.loop_epoch, more, e
            )
