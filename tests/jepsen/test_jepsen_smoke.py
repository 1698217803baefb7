"""A short Jepsen-style run in CI: a 3-server zkpy ensemble behind fault proxies, the
register and set workloads, the leader killed and later isolated; the histories must be
linearizable / valid and the replicas must agree (~20 s)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.jepsen.runner import RunConfig, run


@pytest.mark.timeout(150)
def test_register_and_set_survive_a_kill_and_a_partition(tmp_path: Path) -> None:
    cfg = RunConfig(time_limit=12.0, workloads=["register", "set"], seed=1, clients=4,
                    nemesis=[], nemesis_plan=["kill-leader", "partition-leader"],
                    nemesis_interval=5.0, nemesis_hold=3.0, out_dir=tmp_path)
    result = run(cfg, log=lambda _: None)
    summary = result.summary()
    assert [e.split()[2] for e in result.events] == ["kill-leader", "partition-leader"], summary
    assert result.verdicts == {"register": "linearizable", "set": "valid"}, summary
    assert result.converged == "ok", summary
    oks = sum(1 for op in result.history if op.type == "ok")
    assert oks > 200, summary
