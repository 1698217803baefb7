"""The benchmark runs and every workload gets error-free replies (no timing assertions)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REFERENCE_AVAILABLE, REQUIRE_REFERENCE

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


@pytest.mark.skipif(not REFERENCE_AVAILABLE and not REQUIRE_REFERENCE, reason="needs Apache ZooKeeper's jars")
def test_crosscheck_smoke() -> None:
    """The independent Java client runs every write workload against both servers with
    error-free replies (crosscheck.py raises on any error code), beside bench.py's."""
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "crosscheck.py"), "--rounds", "1",
                          "--duration", "0.5", "--warmup", "0.2", "--workload", "set,create,multi"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    runs = [line for line in out.stdout.splitlines() if line.startswith("round 1 ")]
    assert len(runs) == 12  # 3 workloads x 2 clients x 2 servers
    assert all("ops_per_s=" in line and "ops_per_s=0.000" not in line for line in runs)
    assert "     set   java  ops_per_s" in out.stdout
