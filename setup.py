"""Build hook: compile zkpy's write path with mypyc when this machine can.

`pip install -e .` (or `pip install .`) runs this.  The modules in NATIVE are compiled
to C extensions next to their sources, and a `_native.json` beside them records a hash of
each source, so that `zkpy/__init__.py` uses the extensions only while every one of those
sources is unchanged since the build (an edited module means the pure-Python sources
run, with a warning, until the next install).  Without mypyc or a C compiler, or with
ZKPY_PURE_PYTHON=1 in the environment, nothing is compiled and the sources run as
they are: the same code, about 40% more CPU per request.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
MANIFEST = ROOT / "zkpy" / "_native.json"
GROUP = "zkpy.native"  # the shared library is zkpy/native__mypyc*.so

# The pure cores a write goes through, with what they call per request.
NATIVE = [
    "zkpy/jute/codec.py",
    "zkpy/jute/records.py",
    "zkpy/jute/txns.py",
    "zkpy/datatree/acl.py",
    "zkpy/datatree/paths.py",
    "zkpy/datatree/quota.py",
    "zkpy/datatree/tree.py",
    "zkpy/datatree/watches.py",
    "zkpy/persistence/txnlog.py",
    "zkpy/server/prepare.py",
    "zkpy/server/replies.py",
    "zkpy/server/core.py",
    "zkpy/server/connection.py",
    "zkpy/server/groupcommit.py",
    "zkpy/server/metrics.py",
    "zkpy/server/sessions.py",
    "zkpy/server/stats.py",
]


def _say(msg: str) -> None:
    print(f"zkpy build: {msg}", file=sys.stderr)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_manifest(package_dir: Path) -> None:
    modules = {p[:-3].replace("/", "."): _digest(ROOT / p) for p in NATIVE}
    text = json.dumps({"group": GROUP, "modules": modules}, indent=1) + "\n"
    (package_dir / MANIFEST.name).write_text(text)


class BuildNative(build_ext):
    """build_ext that falls back to the pure-Python package when compiling fails."""

    def run(self) -> None:
        if not self.extensions:
            return
        try:
            super().run()
        except Exception as e:  # noqa: BLE001 - any compiler failure: run the sources
            _say(f"compiling failed ({e}); zkpy runs as pure Python")
            return
        # beside the extensions: the source tree (in place, as `pip install -e .` builds)
        # or the build directory a wheel is made from (`pip install .`)
        _write_manifest(MANIFEST.parent if self.inplace else Path(self.build_lib) / "zkpy")
        _say(f"compiled {len(NATIVE)} modules with mypyc")


def _extensions() -> list:
    if sys.argv[1:2] in (["egg_info"], ["dist_info"], ["sdist"]):
        return []  # pip asks for the metadata first: mypyc would type-check for nothing
    MANIFEST.unlink(missing_ok=True)  # until a build succeeds, extensions left over are ignored
    if os.environ.get("ZKPY_PURE_PYTHON", "") not in ("", "0"):
        _say("ZKPY_PURE_PYTHON is set: nothing compiled")
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        _say("mypyc is not installed: nothing compiled")
        return []
    cwd = os.getcwd()
    os.chdir(ROOT)  # mypyc resolves the module paths against the working directory
    try:
        # Not pyproject's mypy settings (CI's type check): the build environment has no
        # third-party packages, so their types are Any here (and installed ones are not
        # looked at either, so that the compiled code is the same wherever it is built).
        flags = ["--config-file=", "--no-site-packages", "--ignore-missing-imports"]
        return list(mypycify([*flags, *NATIVE], opt_level="3", group_name=GROUP))
    except BaseException as e:  # noqa: BLE001 - mypyc exits on type errors: run the sources
        _say(f"mypyc could not compile ({e!r}); zkpy runs as pure Python")
        return []
    finally:
        os.chdir(cwd)


setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildNative})
