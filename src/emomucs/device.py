"""The one device resolver: training, separation and separator training share it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def resolve_device(name: str) -> torch.device:
    """``"auto"``: CUDA when available, else the CPU; anything else as torch reads it
    (``cpu``, ``cuda``, ``cuda:1``)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """torch's CPU threads set to ``count`` (None or 0: left as they are) for the
    block, then restored."""
    previous = torch.get_num_threads()
    if count:
        torch.set_num_threads(int(count))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """numpy's BLAS (and any OpenMP pool it uses) on one thread for the block.

    The features' and SDR's matrix products then give the same bits on every
    machine and in every process (a BLAS thread count changes the float rounding,
    by about 1e-5 dB on a log-mel), and the local workers, not BLAS threads, use the
    cores.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield
