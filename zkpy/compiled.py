"""Whether this zkpy runs its mypyc-compiled modules, and the guard that keeps stale ones out.

setup.py compiles the write path's modules next to their sources and writes
`_native.json` with a hash of each source.  Python would import an extension before the
source next to it, so an edited module would silently keep running its old compiled
code.  At `import zkpy` this checks every recorded hash; unless all match (and
ZKPY_PURE_PYTHON is unset), a finder placed first on `sys.meta_path` loads every zkpy
module from its `.py` source instead: all compiled or none, since compiled modules call
each other directly.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "_native.json"


def _state() -> tuple[bool, str, bool]:
    """(compiled, why, stale): stale when a compiled module's source changed."""
    if os.environ.get("ZKPY_PURE_PYTHON", "") not in ("", "0"):
        return False, "pure Python (ZKPY_PURE_PYTHON is set)", False
    try:
        modules = json.loads(MANIFEST.read_text())["modules"]
    except FileNotFoundError:
        return False, "pure Python (not compiled)", False
    except (OSError, ValueError, KeyError, TypeError) as e:
        return False, f"pure Python ({MANIFEST.name} unreadable: {e})", True
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    for name, digest in modules.items():
        source = HERE.parent / (name.replace(".", "/") + ".py")
        try:
            now = hashlib.sha256(source.read_bytes()).hexdigest()
        except OSError:
            now = ""
        if now != digest:
            return False, f"pure Python ({source.name} changed since it was compiled)", True
        if not any(source.with_name(source.stem + s).exists() for s in suffixes):
            return False, f"pure Python ({source.name} has no compiled extension)", True
    return True, f"compiled ({len(modules)} modules, mypyc)", False


class SourceFirst:
    """A meta-path finder that gives zkpy's modules their .py source, never an extension."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith("zkpy.") or path is None:
            return None
        leaf = fullname.rpartition(".")[2]
        for entry in path:
            source = Path(entry) / (leaf + ".py")
            if source.is_file():
                return importlib.util.spec_from_file_location(fullname, source)
        return None  # a package, or not zkpy's: the normal finders


COMPILED, DESCRIPTION, _STALE = _state()
if not COMPILED:
    sys.meta_path.insert(0, SourceFirst())
    if _STALE:
        logging.getLogger("zkpy").warning(
            "zkpy: %s; reinstall (pip install -e .) to compile again", DESCRIPTION)
