"""A fixed mmap threshold makes a process give freed feature maps back to the system."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from emomucs.heap import fix_mmap_threshold, with_huge_pages
from emomucs.training import CVOptions, TrainOptions

_FREE_A_BLOCK = """
import re, sys
import numpy as np
from pathlib import Path

from emomucs.heap import fix_mmap_threshold, with_huge_pages

def rss_mb():
    status = open("/proc/self/status").read()
    return int(re.search(r"^VmRSS:\\s+(\\d+) kB", status, flags=re.M).group(1)) / 1024

if sys.argv[1] == "fixed":
    assert fix_mmap_threshold(8)
block = np.ones(4 * 2**20, dtype=np.float32)  # 16 MB, mapped on its own
del block  # with the adaptive default, 16 MB blocks now come from the heap
block = np.ones(4 * 2**20, dtype=np.float32)
held = rss_mb()
del block
print(held - rss_mb())
"""


def _returned_mb(mode: str) -> float:
    output = subprocess.check_output(
        [sys.executable, "-c", _FREE_A_BLOCK, mode], text=True
    )
    return float(output.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_a_freed_large_block_goes_back_to_the_system():
    fixed, adaptive = _returned_mb("fixed"), _returned_mb("adaptive")
    assert fixed > 12  # the 16 MB block left the process
    assert fixed - adaptive > 12  # which glibc's default would have kept


@pytest.mark.parametrize("megabytes", [0, -1, 33])
def test_a_threshold_outside_glibcs_range_is_refused(megabytes):
    with pytest.raises(ValueError, match="mmap threshold"):
        fix_mmap_threshold(megabytes)
    with pytest.raises(ValueError, match="heap_mmap_threshold_mb"):
        CVOptions(TrainOptions(), heap_mmap_threshold_mb=megabytes)


def test_huge_pages_are_asked_for_beside_the_callers_tunables():
    assert with_huge_pages({"A": "1"}) == {
        "A": "1",
        "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1",
    }
    assert with_huge_pages({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}) == {
        "GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
    }
    # the caller's own choice stands
    refused = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}
    assert with_huge_pages(refused) == refused


_TOUCH_A_BLOCK = """
import ctypes, re
from emomucs.heap import fix_mmap_threshold

def huge_mb():
    text = open("/proc/self/smaps_rollup").read()
    return int(re.search(r"^AnonHugePages:\\s+(\\d+) kB", text, flags=re.M).group(1)) / 1024

fix_mmap_threshold(8)
before = huge_mb()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
block = libc.malloc(32 * 2**20)  # mapped on its own (numpy would madvise it itself)
ctypes.memset(block, 1, 32 * 2**20)
print(huge_mb() - before)
"""


def _huge_page_mb(environment: dict[str, str]) -> float:
    output = subprocess.check_output(
        [sys.executable, "-c", _TOUCH_A_BLOCK], text=True, env=environment
    )
    return float(output.split()[-1])


_THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


@pytest.mark.skipif(
    not _THP.exists() or "[madvise]" not in _THP.read_text(),
    reason="the kernel gives huge pages only where asked (madvise) on this machine",
)
def test_a_process_started_with_the_tunable_maps_large_blocks_on_huge_pages():
    plain = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    assert _huge_page_mb(plain) == 0
    # most of the 32 MB block; the kernel may not find a huge page for every part
    assert _huge_page_mb(with_huge_pages(plain)) >= 16
