"""The on-disk cache of generated kernel modules (toyrelu.engines.cpu.cache)."""

from __future__ import annotations

import os

from toyrelu.engines.cpu import cache


def test_prune_deletes_only_kernel_modules_unused_for_long(tmp_path) -> None:
    """Modules older than the cut go with their numba cache files; recent ones, other files and
    other hidden sizes' caches whose names share a prefix stay."""
    cached = tmp_path / "__pycache__"
    cached.mkdir()
    files = {
        "old": tmp_path / "fused_m1_aaaa.py", "new": tmp_path / "fused_m10_aaaa.py",
        "old_nbi": cached / "fused_m1_aaaa.accumulate-13.py311.nbi",
        "new_nbi": cached / "fused_m10_aaaa.accumulate-13.py311.nbi",
        "stray": tmp_path / "abc.tmp", "other": tmp_path / "notes.txt",
    }
    for path in files.values():
        path.write_text("")
    for name in ("old", "old_nbi", "stray", "other"):
        os.utime(files[name], (1_000.0, 1_000.0))
    gone = cache.prune(tmp_path, before=2_000.0)
    assert sorted(gone) == sorted([files["old"], files["stray"]])
    assert {name for name, path in files.items() if path.exists()} == {"new", "new_nbi", "other"}
