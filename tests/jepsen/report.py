"""What a long campaign of runs leaves behind: per run a verdict (JSON), the nemesis
timeline (JSON lines) and a latency plot; across runs a summary table.

The plot is Jepsen's "latency-raw": one point per completed operation at its invoke
time, its latency on a log scale, `ok` / `fail` / `info` in different markers and
colours, and the nemesis intervals shaded behind, one colour per kind of fault.
matplotlib is an optional dependency (the `jepsen` extra); `plot_latency` imports it
only when called.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.jepsen.history import Op, pairs
from tests.jepsen.nemesis import Event
from tests.jepsen.runner import RunConfig, RunResult

STYLE = {  # completion type -> (marker, colour)
    "ok": ("o", "#1f77b4"),
    "fail": ("x", "#d62728"),
    "info": ("^", "#ff7f0e"),
}
FAULT_COLOURS = {"kill": "#e41a1c", "pause": "#377eb8", "partition": "#4daf4a", "client": "#984ea3",
                 "disk": "#a65628"}


def fault_family(kind: str) -> str:
    """kill-leader -> kill, partition-oneway -> partition, kill-all -> kill, ..."""
    return kind.split("-", 1)[0]


def timeline_json(events: Sequence[Event], t0: float) -> str:
    """One JSON object per fault: start and end in seconds from the workload's start."""
    return "".join(json.dumps({"start": round(e.start - t0, 3), "end": round(e.end - t0, 3),
                               "fault": e.kind, "detail": e.detail}) + "\n" for e in events)


def latencies(history: Sequence[Op], t0: float) -> list[tuple[float, float, str, str]]:
    """(invoke time from t0 in s, latency in ms, completion type, f) of every completed op."""
    out = []
    for p in pairs(history):
        if p.complete is not None:
            out.append((p.invoke.time - t0, (p.complete.time - p.invoke.time) * 1000, p.type, p.invoke.f))
    return out


def type_counts(history: Sequence[Op]) -> dict[str, int]:
    """Completions by type over the whole history (unfinished invocations count as info)."""
    out = {"ok": 0, "fail": 0, "info": 0}
    for p in pairs(history):
        out[p.type] += 1
    return out


def plot_latency(history: Sequence[Op], events: Sequence[Event], t0: float, path: Path,
                 title: str = "") -> None:
    """Write the latency-over-time PNG of one run to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = latencies(history, t0)
    fig, ax = plt.subplots(figsize=(10, 5), dpi=80)
    try:
        shaded: set[str] = set()
        for e in events:
            fam = fault_family(e.kind)
            ax.axvspan(e.start - t0, e.end - t0, color=FAULT_COLOURS.get(fam, "#999999"), alpha=0.15,
                       lw=0, label=None if fam in shaded else f"nemesis: {fam}")
            shaded.add(fam)
            ax.text(e.start - t0, 0.98, e.kind, transform=ax.get_xaxis_transform(), fontsize=6,
                    rotation=90, va="top", ha="right", alpha=0.7)
        for type_, (marker, colour) in STYLE.items():
            xs = [x for x, _, t, _ in points if t == type_]
            ys = [max(y, 0.01) for _, y, t, _ in points if t == type_]
            if xs:
                ax.scatter(xs, ys, s=6 if type_ == "ok" else 14, marker=marker, c=colour,
                           alpha=0.5 if type_ == "ok" else 0.9, linewidths=0.8, label=f"{type_} ({len(xs)})")
        ax.set_yscale("log")
        ax.set_xlabel("time since the workload started (s)")
        ax.set_ylabel("latency (ms)")
        ax.set_title(title or "latency of every operation", fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=8, ncol=8, frameon=False)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)


def run_record(result: RunResult) -> dict[str, Any]:
    """A run's verdict as a JSON-able dict."""
    cfg = result.config
    by_type = type_counts(result.history)
    violations = sum(1 for v in result.verdicts.values() if v not in ("linearizable", "valid"))
    violations += result.converged != "ok"
    return {
        "seed": cfg.seed, "servers": cfg.servers, "seconds": cfg.time_limit, "clients": cfg.clients,
        "nemesis": ",".join(cfg.nemesis_plan or cfg.nemesis) or "none",
        "workloads": ",".join(cfg.workloads), "operations": sum(by_type.values()), **by_type,
        "faults": len(result.events), "verdicts": result.verdicts, "details": result.details,
        "replicas": result.converged, "violations": violations, "lost": result.lost,
        "valid": result.valid, "out": str(result.out_dir),
        "t0": result.t0,  # the monotonic time the history's and timeline's times count from
    }


def error_record(cfg: RunConfig, error: BaseException, out: Path) -> dict[str, Any]:
    """The record of a run the harness could not complete (no history to check)."""
    return {
        "seed": cfg.seed, "servers": cfg.servers, "seconds": cfg.time_limit, "clients": cfg.clients,
        "nemesis": ",".join(cfg.nemesis_plan or cfg.nemesis) or "none", "workloads": ",".join(cfg.workloads),
        "operations": 0, "ok": 0, "fail": 0, "info": 0, "faults": 0, "verdicts": {}, "details": {},
        "replicas": "", "violations": 0, "lost": 0, "valid": False, "out": str(out),
        "error": f"{type(error).__name__}: {error}"[:2000],
    }


def _verdict(r: dict[str, Any]) -> str:
    return "valid" if r["valid"] else "ERROR" if r.get("error") else "INVALID"


COLUMNS = ["run", "seed", "servers", "seconds", "clients", "nemesis", "faults", "operations", "ok", "fail",
           "info", "violations", "lost", "verdict"]


def table(records: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of the runs and a total line."""
    rows = [[str(i + 1), str(r["seed"]), str(r["servers"]), f"{r['seconds']:g}", str(r["clients"]),
             r["nemesis"], str(r["faults"]), str(r["operations"]), str(r["ok"]), str(r["fail"]),
             str(r["info"]), str(r["violations"]), str(r["lost"]), _verdict(r)]
            for i, r in enumerate(records)]
    total = ["total", "", "", f"{sum(r['seconds'] for r in records):g}", "", "",
             str(sum(r["faults"] for r in records))]
    total += [str(sum(r[k] for r in records))
              for k in ("operations", "ok", "fail", "info", "violations", "lost")]
    total.append(f"{sum(r['valid'] for r in records)}/{len(records)} valid")
    rows.append(total)
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(COLUMNS)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(COLUMNS), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
                      *(line(r) for r in rows)]) + "\n"
