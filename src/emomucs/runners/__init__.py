"""Kedro runners beyond Kedro's own: :class:`DaskRunner` runs nodes on a Dask cluster
(``kedro run --runner=emomucs.runners.DaskRunner``)."""

from .dask_runner import SCHEDULER_ENV, DaskRunner, local_cluster

__all__ = ["SCHEDULER_ENV", "DaskRunner", "local_cluster"]
