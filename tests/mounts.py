"""Small file systems for storage-fault tests: a tmpfs of a few megabytes, filled or made read-only.

The tests run as root (as CI does), which ignores file permissions: only a
read-only mount refuses root's writes, and only a full file system gives a
real ENOSPC, so these are real mounts, unmounted when the test ends.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "8m"):
    """A tmpfs of ``size`` mounted at ``path`` for the duration of the block."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)


def make_read_only(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)


def fill(mount: Path, name: str = "filler") -> Path:
    """Write zeros into ``mount`` until it is full; the file, to delete when space should come back."""
    filler = mount / name
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True, check=False)
    assert os.statvfs(mount).f_bavail == 0, "the file system is not full"
    return filler
