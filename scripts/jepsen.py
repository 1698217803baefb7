#!/usr/bin/env python3
"""Run the Jepsen-style harness (tests/jepsen) against a zkpy ensemble, once or as a
campaign of many runs.

    python scripts/jepsen.py --seconds 60 --nemesis kill,pause,partition \\
        --workload register,set --seed 7
    python scripts/jepsen.py --runs 30 --seconds 30 --clients 10 --servers 3 \\
        --nemesis "kill;crash;pause;partition;client;kill,pause,partition,client" --out /tmp/campaign

Run i uses seed `--seed` + i and, when `--nemesis` lists groups separated by `;`, group
i mod (number of groups) -- so a campaign goes round the nemeses.  Each run's folder
(`--out`/run-NN-seed-S) keeps history.jsonl (one operation record a line), nemesis.jsonl
(the fault timeline; nemesis.txt is the same for reading), verdict.json (counts, the
checkers' verdicts, violations, lost writes), summary.txt, latency.png (needs matplotlib:
the `jepsen` extra) and each member's log.  `--out` gets table.md / table.json, the
summary across runs, rewritten after every run.  The nemesis schedule is reproducible
per seed; the client interleaving is not.  A run the harness cannot complete (an
ensemble that does not start, say) is an ERROR row and the campaign goes on.  Exit status
1 when any run is invalid, unknown or an error.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.jepsen import report  # noqa: E402
from tests.jepsen.runner import RunConfig, run  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", "--time", dest="seconds", type=float, default=60.0,
                   help="seconds of workload per run")
    p.add_argument("--nemesis", default="kill,pause,partition",
                   help="kill,crash,pause,partition,client,disk or none; groups separated by ';' "
                        "are used in turn by successive runs")
    p.add_argument("--workload", default="register,set", help="register,set,ids,counter,queue,session")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", type=int, default=1, help="runs with seeds seed, seed+1, ...")
    p.add_argument("--servers", type=int, default=3)
    p.add_argument("--clients", type=int, default=6)
    p.add_argument("--interval", type=float, default=10.0, help="seconds between faults")
    p.add_argument("--hold", type=float, default=4.0, help="seconds a fault is held")
    p.add_argument("--plain-reads", action="store_true",
                   help="register reads without sync (ZooKeeper only promises sequential consistency "
                        "for them, so the checker may rightly reject the history)")
    p.add_argument("--no-plot", action="store_true", help="skip the latency PNGs")
    p.add_argument("--keep-logs", action="store_true",
                   help="keep the members' logs of valid runs too (always kept for invalid ones)")
    p.add_argument("--out", type=Path, default=None, help="directory for the runs' files")
    a = p.parse_args(argv)
    groups = [[] if g.strip() in ("", "none") else g.strip().split(",") for g in a.nemesis.split(";")]
    out: Path = a.out or Path(tempfile.mkdtemp(prefix="jepsen-campaign-"))
    out.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, object]] = []
    started = time.monotonic()
    for i in range(a.runs):
        seed = a.seed + i
        nemesis = groups[i % len(groups)]
        run_dir = out / f"run-{i + 1:02d}-seed-{seed}"
        print(f"== run {i + 1}/{a.runs}: seed {seed}, {a.servers} servers, {a.clients} clients, "
              f"{a.seconds:g}s, nemesis {','.join(nemesis) or 'none'} -> {run_dir}", flush=True)
        cfg = RunConfig(time_limit=a.seconds, nemesis=nemesis, workloads=a.workload.split(","), seed=seed,
                        servers=a.servers, clients=a.clients, nemesis_interval=a.interval,
                        nemesis_hold=a.hold, sync_reads=not a.plain_reads, out_dir=run_dir)
        try:
            result = run(cfg, log=lambda line: print(line, flush=True))
        except Exception as e:  # the harness failed (not a verdict): record it, go on
            print(f"run {i + 1} ERROR: {e!r}"[:3000], flush=True)
            record = report.error_record(cfg, e, run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "verdict.json").write_text(json.dumps(record, indent=1) + "\n")
        else:
            print(result.summary(), flush=True)
            record = report.run_record(result)
            (run_dir / "verdict.json").write_text(json.dumps(record, indent=1) + "\n")
            (run_dir / "nemesis.jsonl").write_text(report.timeline_json(result.timeline, result.t0))
            if not a.no_plot:
                report.plot_latency(result.history, result.timeline, result.t0, run_dir / "latency.png",
                                    f"seed {seed}: {a.servers} servers, {a.clients} clients, nemesis "
                                    f"{record['nemesis']}; {record['ok']} ok, {record['fail']} fail, "
                                    f"{record['info']} info")
            if result.valid and not a.keep_logs:
                for log in run_dir.glob("server.*.log"):
                    log.unlink()
        records.append(record)
        (out / "table.json").write_text(json.dumps(records, indent=1) + "\n")
        (out / "table.md").write_text(report.table(records))
        done = time.monotonic() - started
        print(f"== {i + 1}/{a.runs} runs in {done:.0f}s ({sum(bool(r['valid']) for r in records)} valid), "
              f"about {done / (i + 1) * (a.runs - i - 1):.0f}s to go", flush=True)
    print(report.table(records), end="")
    print(f"table in {out / 'table.md'}")
    if a.out is None and all(r["valid"] for r in records):
        shutil.rmtree(out, ignore_errors=True)
    return 0 if all(r["valid"] for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
