"""The guard that decides between mypyc-compiled modules and their sources (zkpy/compiled.py).

Each case runs a fresh interpreter on a copy of the zkpy package in use (with its
extensions, when this install compiled them) and asks where a compiled module came from.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import zkpy
import zkpy.compiled

PACKAGE = Path(zkpy.__file__).resolve().parent
PROBE = ("import zkpy, zkpy.compiled as c, zkpy.server.core as core, zkpy.jute.codec as codec; "
         "print(c.COMPILED, core.__file__.endswith('.py'), codec.__file__.endswith('.py'))")
needs_compiled = pytest.mark.skipif(not zkpy.COMPILED, reason="this install is not compiled")


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(PACKAGE, tmp_path / "zkpy", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _probe(root: Path, **env: str) -> tuple[str, str]:
    full = {k: v for k, v in os.environ.items() if k != "ZKPY_PURE_PYTHON"}
    full.update(env, PYTHONPATH=str(root))
    p = subprocess.run([sys.executable, "-c", PROBE], cwd=root, env=full, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip(), p.stderr


@needs_compiled
def test_an_unchanged_compiled_install_runs_its_extensions(tmp_path: Path) -> None:
    out, err = _probe(_copy(tmp_path))
    assert out == "True False False"
    assert err == ""


@needs_compiled
def test_an_edited_module_makes_every_module_run_from_source(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    with open(root / "zkpy" / "server" / "replies.py", "a") as f:
        f.write("# edited after the build\n")
    out, err = _probe(root)
    assert out == "False True True"  # codec.py is unchanged, yet not compiled: all or none
    assert "replies.py changed since it was compiled" in err
    assert "pip install -e ." in err


@needs_compiled
def test_pure_python_env_runs_the_sources(tmp_path: Path) -> None:
    out, err = _probe(_copy(tmp_path), ZKPY_PURE_PYTHON="1")
    assert out == "False True True"
    assert err == ""


def test_without_a_manifest_extensions_left_behind_are_ignored(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    (root / "zkpy" / "_native.json").unlink(missing_ok=True)
    out, err = _probe(root)
    assert out == "False True True"
    assert err == ""


def test_a_manifest_without_its_extensions_is_not_believed(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    for so in (root / "zkpy").rglob("*.so"):
        so.unlink()
    sources = {m: root / (m.replace(".", "/") + ".py") for m in ("zkpy.jute.codec", "zkpy.server.core")}
    modules = {m: hashlib.sha256(p.read_bytes()).hexdigest() for m, p in sources.items()}
    (root / "zkpy" / "_native.json").write_text(json.dumps({"group": "zkpy.native", "modules": modules}))
    out, err = _probe(root)
    assert out == "False True True"
    assert "codec.py has no compiled extension" in err


def test_an_unreadable_manifest_runs_the_sources_and_says_so(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    (root / "zkpy" / "_native.json").write_text("{not json")
    out, err = _probe(root)
    assert out == "False True True"
    assert "_native.json unreadable" in err
