"""How much freed memory a process keeps (glibc's malloc)."""

from __future__ import annotations

import ctypes
from collections.abc import Mapping

_M_MMAP_THRESHOLD = -3
MAX_MMAP_THRESHOLD_MB = 32
"""glibc's ceiling for the threshold on 64-bit systems (``HEAP_MAX_SIZE / 2``)."""
HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"
"""glibc (2.35+) asks the kernel for transparent huge pages on what malloc maps."""


def fix_mmap_threshold(megabytes: float) -> bool:
    """Have every allocation of ``megabytes`` or more mapped on its own and returned
    to the system when freed (glibc's ``M_MMAP_THRESHOLD``).

    glibc's default threshold adapts: once a large block is freed, blocks up to its
    size come from the heap, and the heap keeps what it has grown to. Training a C2D
    split then holds about 100 MB more than with the threshold fixed at 8 MB
    (``python -m benchmarks.split_memory``); fixed, each large map is faulted in anew,
    which costs time unless the process maps huge pages (:func:`with_huge_pages`).
    Fixing it turns the adaptation off for the rest of the process. Results do not
    depend on it.

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


def with_huge_pages(environment: Mapping[str, str]) -> dict[str, str]:
    """``environment`` for a new process whose malloc backs its blocks with
    transparent huge pages, unless it already says how (``GLIBC_TUNABLES``).

    With the mmap threshold fixed, every large feature map is mapped anew and
    faulted in page by page; 2 MB pages make that 512 times fewer faults. An
    EmoMucs-C2D split then trains faster than under glibc's adaptive default and
    still holds about 100 MB less (``python -m benchmarks.split_memory``). glibc
    reads tunables only when a process starts, and ignores this one before 2.35 or
    where the kernel's transparent huge pages are ``never``.
    """
    tunables = environment.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb=" in tunables:
        return dict(environment)
    return {
        **environment,
        "GLIBC_TUNABLES": ":".join(filter(None, [tunables, HUGE_PAGES_TUNABLE])),
    }
