"""How much freed memory a process keeps (glibc's malloc)."""

from __future__ import annotations

import ctypes

_M_MMAP_THRESHOLD = -3
MAX_MMAP_THRESHOLD_MB = 32
"""glibc's ceiling for the threshold on 64-bit systems (``HEAP_MAX_SIZE / 2``)."""


def fix_mmap_threshold(megabytes: float) -> bool:
    """Have every allocation of ``megabytes`` or more mapped on its own and returned
    to the system when freed (glibc's ``M_MMAP_THRESHOLD``).

    glibc's default threshold adapts: once a large block is freed, blocks up to its
    size come from the heap, and the heap keeps what it has grown to. Training a C2D
    split then holds about 115 MB more than with the threshold fixed at 8 MB, at the
    same speed (``python -m benchmarks.split_memory``). Fixing it turns the adaptation
    off for the rest of the process. Results do not depend on it.

    Returns:
        Whether it took effect (False where the C library is not glibc).

    Raises:
        ValueError: for a threshold not in ``(0, 32]`` MB.
    """
    if not 0 < megabytes <= MAX_MMAP_THRESHOLD_MB:
        raise ValueError(
            f"the mmap threshold must be above 0 and at most "
            f"{MAX_MMAP_THRESHOLD_MB} MB, got {megabytes}"
        )
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, int(megabytes * 2**20)))
