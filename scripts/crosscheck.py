"""Check bench.py's figures with an independent client: Apache ZooKeeper's Java client.

    python scripts/crosscheck.py [--ensemble] [--workload set,create] [--conns 8]
                                 [--depth 16] [--duration 5] [--warmup 3] [--rounds 3]

Starts zkpy and Apache ZooKeeper as `bench.py compare` does (same zoo.cfg, fresh data
dirs; --ensemble: 3-server pseudo-clusters) and, for each round and workload, runs
scripts/IndependentLoad.java (ZooKeeper's own client, async API, CONNS handles each
keeping DEPTH requests in flight) against each server in alternating order, then the
same load through bench.py's client. Prints medians of the rounds and the ratios
zkpy/ZooKeeper by each client, with server CPU per reply and busy cores as bench.py
reports them (the Java client's over its whole run, warm-up included). Server CPU per
reply should agree between the clients; throughput agrees only while neither client
nor machine is the limit: the JVM client needs far more CPU per request than
bench.py's, and on a small machine it competes with the servers for the cores.
"""

from __future__ import annotations

import argparse
import re
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402 - the servers and the load of bench.py compare

JAVA_CLIENT = Path(__file__).resolve().parent / "IndependentLoad.java"
LINE = re.compile(r"ops_per_s=(\S+) p50_ms=(\S+) p99_ms=(\S+) errors=(\d+) total_ops=(\d+)")
Target = bench.Server | bench.Cluster
FIGS = ("ops_per_s", "p50_ms", "p99_ms", "srv_us_op", "srv_cores", "cli_cores", "mach_cores")


def java_load(target: Target, workload: str, a: argparse.Namespace) -> dict[str, float]:
    """The Java client's run; CPU counted over its whole load (warm-up included) per reply."""
    hosts = target.hosts
    cli0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    before = bench.CpuSample.take(target.pids())
    cmd = ["java", "-Xmx1g", "-cp", ":".join(bench.REF_JARS), "-Dlog4j.configuration=file:/dev/null",
           str(JAVA_CLIENT), hosts, workload, str(a.conns), str(a.depth), str(a.duration), str(a.warmup)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120 + a.duration + a.warmup)
    after = bench.CpuSample.take(target.pids())
    cli1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    m = LINE.search(out.stdout)
    if out.returncode != 0 or m is None:
        raise RuntimeError(f"the Java client failed ({out.returncode}):\n{out.stdout}\n{out.stderr[-2000:]}")
    if int(m.group(4)):
        raise RuntimeError(f"the Java client got {m.group(4)} errors from {hosts}")
    client = (cli1.ru_utime + cli1.ru_stime) - (cli0.ru_utime + cli0.ru_stime)
    figs = bench.cpu_figures(before, after, int(m.group(5)), client)
    return {"ops_per_s": float(m.group(1)), "p50_ms": float(m.group(2)), "p99_ms": float(m.group(3)),
            **{k: figs[k] for k in FIGS[3:]}}


def bench_load(target: Target, workload: str, a: argparse.Namespace) -> dict[str, float]:
    res = bench.run_workload(target.hosts, workload, a.conns, a.depth, a.duration, 1, target.pids())
    if res.errors:
        raise RuntimeError(f"bench.py's client got {res.errors} errors from {target.hosts}")
    return {"ops_per_s": res.ops_per_s, "p50_ms": res.pct(0.5), "p99_ms": res.pct(0.99),
            **{k: res.cpu[k] for k in FIGS[3:]}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ensemble", action="store_true")
    p.add_argument("--workload", default="set,create")
    p.add_argument("--conns", type=int, default=8)
    p.add_argument("--depth", type=int, default=16)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="zkcross-"))
    kinds = ("zkpy", "zookeeper")
    targets = {k: (bench.Cluster(k, root / k) if a.ensemble else bench.Server(k, root / k)) for k in kinds}
    results: dict[tuple[str, str, str], list[dict[str, float]]] = {}
    try:
        for t in targets.values():
            t.start()
        workloads = a.workload.split(",")
        for r in range(a.rounds):
            order = kinds if r % 2 == 0 else kinds[::-1]
            for w in workloads:
                for client, load in (("java", java_load), ("bench", bench_load)):
                    for k in order:
                        fig = load(targets[k], w, a)
                        results.setdefault((client, w, k), []).append(fig)
                        why = bench.limits(fig)
                        print(f"round {r + 1} {client:5} {w:6} {k:9} " +
                              " ".join(f"{n}={v:.3f}" for n, v in fig.items()) +
                              (f"  LIMITED: {'; '.join(why)}" if why else ""), flush=True)
    finally:
        for t in targets.values():
            t.stop()
    mode = "3-server ensembles" if a.ensemble else "standalone"
    print(f"\n{mode}: conns={a.conns} depth={a.depth} duration={a.duration}s warmup={a.warmup}s "
          f"rounds={a.rounds} (medians)")
    print(f"{'workload':>8} {'client':>6} {'figure':>10} {'zkpy':>12} {'zookeeper':>12} {'zkpy/zk':>8}")
    for w in workloads:
        for client in ("java", "bench"):
            for fig in FIGS:
                z = statistics.median(x[fig] for x in results[(client, w, "zkpy")])
                j = statistics.median(x[fig] for x in results[(client, w, "zookeeper")])
                print(f"{w:>8} {client:>6} {fig:>10} {z:12.3f} {j:12.3f} {z / j if j else 0:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
