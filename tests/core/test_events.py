"""A job's seconds per stage (``StageTimes``): a stage timed in parts sums them, and a failing block still counts."""

from __future__ import annotations

import pytest

from dreamsmith.core.runtime import events


def test_stage_times_add_up_the_parts_of_a_stage(monkeypatch):
    clock = iter([0.0, 1.5, 10.0, 10.25, 20.0, 24.0])
    monkeypatch.setattr(events.time, "perf_counter", lambda: next(clock))
    times = events.StageTimes()
    with times.stage("load"):
        pass
    with times.stage("coarse"):
        pass
    with pytest.raises(RuntimeError), times.stage("load"):
        raise RuntimeError("the block failed")
    assert times == {"load": 5.5, "coarse": 0.25}
