"""The benchmark runs and every workload gets error-free replies (no timing assertions)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_smoke() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench.py"), "smoke", "--duration", "0.3"],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    workloads = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(workloads) == 8  # 6 workloads, watch, get over TLS
    assert '"tls": true' in workloads[-2]


def test_pipeline_bench_smoke() -> None:
    for kind in ("set", "create", "get", "multi"):
        out = subprocess.run([sys.executable, str(ROOT / "scripts" / "pipeline_bench.py"), kind,
                              "--requests", "320"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        assert out.stdout.startswith(f"{kind}: ") and "us per request" in out.stdout
