"""Start the process with glibc malloc thresholds that suit large tensors.

emotion2vec allocates and frees tensors of tens of megabytes on every forward
pass. glibc's default serves those with fresh mmap calls and returns them on
free, so each pass pays for page faults again (measured on a 2-core VM: 10 s
clip 3.5 s default vs 2.9 s tuned; other VMs saw 3-5x). These thresholds keep
freed memory in the heap. glibc reads them only at process start, hence the
re-exec of the same command.
"""

from __future__ import annotations

import os
import platform
import sys

FAST_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "68719476736"}


def reexec_with_fast_malloc(arguments: list[str]) -> None:
    """Replace this process by ``python <arguments>`` with ``FAST_MALLOC`` set, if needed.

    No-op off glibc, when already set, or when ``BOT_BRIDGE_DEFAULT_MALLOC`` asks to keep glibc's default.
    """
    if (
        sys.platform != "linux"
        or platform.libc_ver()[0] != "glibc"
        or all(os.environ.get(k) for k in FAST_MALLOC)
        or os.environ.get("BOT_BRIDGE_DEFAULT_MALLOC")
    ):
        return
    os.execve(sys.executable, [sys.executable, *arguments], {**os.environ, **FAST_MALLOC})
