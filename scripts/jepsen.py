#!/usr/bin/env python3
"""Run the Jepsen-style harness (tests/jepsen) against a zkpy ensemble.

    python scripts/jepsen.py --time 60 --nemesis kill,pause,partition \\
        --workload register,set --seed 7 [--runs 5]

Each run prints a summary (operations by type, nemesis events, the checkers' verdicts)
and leaves history.jsonl, nemesis.txt and summary.txt in its output directory.  The
nemesis schedule is reproducible per seed; the client interleaving is not.  Exit status
1 when any run is invalid (or unknown).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.jepsen.runner import RunConfig, run  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--time", type=float, default=60.0, help="seconds of workload per run")
    p.add_argument("--nemesis", default="kill,pause,partition",
                   help="kill,crash,pause,partition,disk or none")
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
    p.add_argument("--out", type=Path, default=None, help="directory for the runs' files")
    a = p.parse_args(argv)
    nemesis = [] if a.nemesis in ("", "none") else a.nemesis.split(",")
    bad = 0
    for i in range(a.runs):
        seed = a.seed + i
        cfg = RunConfig(time_limit=a.time, nemesis=nemesis, workloads=a.workload.split(","), seed=seed,
                        servers=a.servers, clients=a.clients, nemesis_interval=a.interval,
                        nemesis_hold=a.hold, sync_reads=not a.plain_reads,
                        out_dir=a.out / f"seed-{seed}" if a.out else None)
        result = run(cfg)
        print(result.summary(), flush=True)
        bad += not result.valid
    if a.runs > 1:
        print(f"{a.runs - bad}/{a.runs} runs valid")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
