"""bench.run: the percentile the rows report."""

from __future__ import annotations

import pytest

from dyssect_ctrl.bench import run


def test_percentile_interpolates():
    assert run.pct([], 50) is None
    assert run.pct([3.0], 99) == 3.0
    assert run.pct([0.0, 10.0], 50) == pytest.approx(5.0)
    assert run.pct([float(x) for x in range(101)], 99) == pytest.approx(99.0)
