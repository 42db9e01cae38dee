"""The store of per-variant results, readable before anything has run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kedro_datasets.partitions import PartitionedDataset


class ResultsStoreDataset(PartitionedDataset):
    """A ``PartitionedDataset`` that loads as ``{}`` while it holds no partition.

    Kedro's raises "No partitions found" instead, so ``kedro run --pipeline=reporting``
    on a fresh clone failed rather than writing a table that says nothing has run.
    """

    def load(self) -> dict[str, Callable[[], Any]]:
        self._invalidate_caches()
        if not self._list_partitions():
            return {}
        return super().load()
