"""Progress bars that speak on a terminal and stay quiet in CI and logs."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

from emomucs.local_pool import in_worker

T = TypeVar("T")


def quiet_progress() -> bool:
    """True off a terminal, in CI, where a progress bar is only noise in the log, and
    in a local worker process (its parent shows the progress)."""
    return bool(os.environ.get("CI")) or in_worker() or not sys.stderr.isatty()


def progress(items: Iterable[T], **kwargs) -> Iterable[T]:
    """``tqdm(items, **kwargs)``, disabled where :func:`quiet_progress` says so."""
    return tqdm(items, disable=quiet_progress(), **kwargs)
