"""The campaign report (tests/jepsen/report.py): a latency plot rendered from a small
history, the timeline, the summary table.  Fast: no ensemble."""

from __future__ import annotations

import json
from pathlib import Path

from matplotlib.image import imread

from tests.jepsen.history import Op
from tests.jepsen.nemesis import Event
from tests.jepsen.report import error_record, latencies, plot_latency, table, timeline_json, type_counts
from tests.jepsen.runner import RunConfig

T0 = 1000.0


def small_history() -> list[Op]:
    """Two processes writing for 10 s; one write is unanswered during a fault (info), one
    cas fails; the last invocation never completes."""
    ops: list[Op] = []

    def add(process: int, type_: str, f: str, t: float, value: object = None) -> None:
        ops.append(Op(len(ops), process, type_, f, "r0", value, T0 + t))

    for i in range(40):
        t = i * 0.25
        add(0, "invoke", "write", t, i)
        add(0, "ok", "write", t + 0.002 * (1 + i % 7), i)
    add(1, "invoke", "write", 3.0, 99)
    add(1, "info", "write", 6.0, 99)
    add(2, "invoke", "cas", 7.0, (1, 2))
    add(2, "fail", "cas", 7.01, (1, 2))
    add(2, "invoke", "read", 9.5)
    return sorted(ops, key=lambda op: op.time)


def test_latency_plot_renders_every_kind_of_point(tmp_path: Path) -> None:
    history = [Op(i, op.process, op.type, op.f, op.key, op.value, op.time)
               for i, op in enumerate(small_history())]
    events = [Event(T0 + 2.5, T0 + 5.0, "partition-leader", "1 | 2,3"), Event(T0 + 6.0, T0 + 7.5,
                                                                             "kill-random", "server.2")]
    points = latencies(history, T0)
    assert len(points) == 42  # the unfinished read has no latency
    assert sorted({t for _, _, t, _ in points}) == ["fail", "info", "ok"]
    assert max(points, key=lambda p: p[1])[1:3] == (3000.0, "info")
    assert type_counts(history) == {"ok": 40, "fail": 1, "info": 2}
    png = tmp_path / "latency.png"
    plot_latency(history, events, T0, png, "a small history")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000
    image = imread(png)
    assert image.shape[0] > 200 and image.shape[1] > 500
    colours = {tuple(px) for px in image.reshape(-1, image.shape[2])[::7].round(2).tolist()}
    assert len(colours) > 50  # points, shading, text: not a blank canvas


def test_timeline_and_table() -> None:
    lines = timeline_json([Event(T0 + 1.0, T0 + 4.5, "pause-long", "server.1 for 8.0s")], T0).splitlines()
    assert [json.loads(x) for x in lines] == [{"start": 1.0, "end": 4.5, "fault": "pause-long",
                                               "detail": "server.1 for 8.0s"}]
    rec = {"seed": 3, "servers": 3, "seconds": 30.0, "clients": 10, "nemesis": "kill", "faults": 3,
           "operations": 100, "ok": 90, "fail": 8, "info": 2, "violations": 0, "lost": 0, "valid": True}
    bad = dict(rec, seed=4, violations=1, lost=2, valid=False)
    broken = error_record(RunConfig(time_limit=30.0, nemesis=["kill"], seed=5, clients=10),
                          AssertionError("server.2 exited"), Path("run-03"))
    text = table([rec, bad, broken])
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()]
    assert rows[0][:3] == ["run", "seed", "servers"] and len(rows) == 6
    assert rows[3][-3:] == ["1", "2", "INVALID"]
    assert rows[4][1] == "5" and rows[4][-1] == "ERROR"
    assert rows[5] == ["total", "", "", "90", "", "", "6", "200", "180", "16", "4", "1", "2", "1/3 valid"]
