"""The on-disk cache of generated kernel modules.

``kernels`` and ``cells`` generate Python source, one module per hidden size; ``load`` writes it to
a cache folder and imports it from there, so that numba can cache its machine code beside it and a
new process loads the kernels instead of compiling them again. ``prune`` deletes the modules no
process has loaded for UNUSED_DAYS.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import numba

from toyrelu.engines.cpu import target

# Kernel modules (and numba's machine code for them) not loaded for this long are deleted.
UNUSED_DAYS = 30


def _cache_dir() -> Path:
    """``TOYRELU_CACHE_DIR``, else ``$XDG_CACHE_HOME/toyrelu`` (``~/.cache/toyrelu``), or a
    folder in the system's temporary one where that cannot be written."""
    root = os.environ.get("TOYRELU_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "toyrelu"
    )
    path = Path(root)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path)
        probe.close()
    except OSError:
        path = Path(tempfile.gettempdir()) / "toyrelu-kernels"
        path.mkdir(parents=True, exist_ok=True)
    return path


def prune(folder: Path, before: float) -> list[Path]:
    """Delete the kernel modules in ``folder`` last used (modified) before time ``before``,
    with numba's cached machine code for them and stray temporary files; return what went.

    Each toyrelu version and CPU writes its own modules (a hash names them), so without this
    the folder grows with every hidden size and version. A module in use by another
    version is touched on every load and so is never older than UNUSED_DAYS.
    """
    gone = []
    for path in [*folder.glob("fused_m*.py"), *folder.glob("cells_m*.py"),
                 *folder.glob("*.tmp")]:
        try:
            if path.stat().st_mtime >= before:
                continue
            path.unlink()
        except OSError:
            continue  # another process got there first, or the folder is read-only
        gone.append(path)
        if path.suffix == ".py":
            for cached in (folder / "__pycache__").glob(f"{path.stem}.*"):
                with contextlib.suppress(OSError):
                    cached.unlink()
    return gone


def module_name(kind: str, m: int, parallel: bool) -> str:
    """The name of the ``kind`` module ("fused", "cells") for hidden size m, which ``load``
    completes with a hash."""
    return f"{kind}_m{m}{'_parallel' if parallel else ''}"


def load(name: str, source: str) -> ModuleType:
    """Import generated ``source`` as a module, written once to the kernel cache folder.

    The file name is ``name`` and a hash of the source (and of the CPU features, numba's
    version and its SLP setting in use), so a changed generator or machine never reuses stale
    code.
    """
    target.configure()
    features = numba.config.CPU_FEATURES  # type: ignore[attr-defined]
    slp = numba.config.SLP_VECTORIZE  # type: ignore[attr-defined]
    key = f"{source}\n{features}\n{numba.__version__}\nslp={slp}"
    name = f"{name}_{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    path = _cache_dir() / f"{name}.py"
    if not path.exists() or path.read_text() != source:
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as f:
            f.write(source)
        # Atomic, so two worker processes never see a half-written module.
        os.replace(f.name, path)
        prune(path.parent, time.time() - UNUSED_DAYS * 86_400)
    else:
        with contextlib.suppress(OSError):
            os.utime(path)  # the modification time marks the last use, for ``prune``
    spec = importlib.util.spec_from_file_location(f"toyrelu_{name}", path)
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    # numba's on-disk cache finds a function's globals again through sys.modules.
    sys.modules[spec.name] = loaded
    spec.loader.exec_module(loaded)
    return loaded
