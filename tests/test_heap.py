"""A fixed mmap threshold makes a process give freed feature maps back to the system."""

import subprocess
import sys

import pytest

from emomucs.heap import fix_mmap_threshold
from emomucs.training import CVOptions, TrainOptions

_FREE_A_BLOCK = """
import re, sys
import numpy as np
from emomucs.heap import fix_mmap_threshold

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
