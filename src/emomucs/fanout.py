"""Fan-out of a node's independent jobs to a Dask cluster, when one is reachable.

The heavy nodes (separation, nested CV) are loops over independent jobs: batches of
tracks, (outer fold, inner split, repeat) trainings. :func:`map_in_order` runs such a
loop on the Dask cluster a node runs on, one task per job, and returns the results in
the jobs' order, so what the node does with them (and every number it computes) is
the same as in the plain loop. A cluster is *reachable* when this process is a Dask
worker (the node runs under :class:`emomucs.runners.DaskRunner`) or holds a Dask
client (``distributed.Client(...)`` in a notebook). Without one, ``workers`` above 1
runs the jobs in that many local processes, this one and ``workers - 1`` worker
processes (:mod:`emomucs.local_pool`), and ``workers=1`` (or a single job) runs the
loop here, in order.

Jobs must be self-contained: seeded from their own description (never from state a
previous job left behind), and writing any file through
:func:`emomucs.atomic.write_atomically`, since Dask runs a job again on another
worker when the worker running it dies.
"""

from __future__ import annotations

import logging
import sys
import uuid
import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from emomucs.local_pool import in_worker, pool, resolve_workers

log = logging.getLogger(__name__)

_Job = TypeVar("_Job")
_Result = TypeVar("_Result")


@contextmanager
def _cluster_client():
    """A Dask client to submit to (the worker's, seceded from its thread pool while
    the jobs run), or None when no cluster is reachable."""
    if "distributed" not in sys.modules:  # nothing could have made a client
        yield None
        return
    from distributed import get_worker, worker_client
    from distributed.client import Client

    try:
        get_worker()
    except ValueError:
        try:
            client = Client.current()
        except ValueError:
            client = None
        if client is not None and client.status != "running":
            client = None
        yield client
        return
    # a task waiting on tasks it submitted gives its thread back to the worker
    with worker_client() as client:
        yield client


def _value(value: _Result) -> _Result:
    return value


def upload(client, value: Any, key: str):
    """A future holding ``value`` on the cluster, for tasks to take as an argument.

    Unlike ``client.scatter``, the value is part of the task graph (a task that
    returns it), so when the worker holding it dies the scheduler recomputes it
    (sends it again) instead of failing the tasks that need it; each worker fetches
    it once, however many of its tasks read it.
    """
    with warnings.catch_warnings():
        # the value travels in the graph on purpose
        warnings.filterwarnings("ignore", message=".*[Ll]arge graph.*")
        warnings.filterwarnings("ignore", message=".*[Ll]arge object.*")
        return client.submit(_value, value, key=key, pure=False)


TRACKS_PER_TASK = 8
"""Tracks per fan-out task of the per-track stages (features, SDR): many tasks per
worker, so the workers end together."""


def in_chunks(items: Sequence[_Job], size: int = TRACKS_PER_TASK) -> list[tuple]:
    """``items`` cut into consecutive tuples of ``size`` (the last may be shorter)."""
    return [tuple(items[i : i + size]) for i in range(0, len(items), size)]


def map_in_order(
    function: Callable[..., _Result],
    jobs: Sequence[_Job],
    *,
    shared: dict[str, Any] | None = None,
    label: str = "job",
    on_done: Callable[[_Job, _Result], object] | None = None,
    workers: int | str | None = 1,
) -> list[_Result]:
    """``[function(job, **shared) for job in jobs]``, on the cluster when one is
    reachable, else on ``workers`` local processes.

    Args:
        function: A module-level function (workers import it by name).
        jobs: Small, picklable job descriptions, one task each.
        shared: Keyword arguments every job reads (data, options): sent to the
            cluster once (not with each task), fetched once by each worker.
        label: Names the tasks in Dask's dashboard and the log.
        on_done: Called with each job and its result as it finishes (in the
            order of ``jobs`` here, in the order they finish on a cluster), e.g.
            to advance a progress bar.
        workers: Local processes running jobs when no cluster is reachable, this
            one included: ``auto`` (one per usable core) or a count; 1 runs the
            loop in this process alone.

    Returns:
        The results in the order of ``jobs``.
    """
    shared = shared or {}
    with _cluster_client() as client:
        if client is None and len(jobs) >= 2 and not in_worker():
            count = resolve_workers(workers)
            if count > 1:
                return pool(count).map(function, jobs, shared, label, on_done)
        if client is None or len(jobs) < 2:
            results = []
            for job in jobs:
                results.append(function(job, **shared))
                if on_done is not None:
                    on_done(job, results[-1])
            return results
        from distributed import as_completed

        run = uuid.uuid4().hex[:8]
        inputs = {
            name: upload(client, value, f"{label}-{run}-{name}")
            for name, value in shared.items()
        }
        futures = [
            client.submit(function, job, **inputs, key=f"{label}-{run}-{i}", pure=False)
            for i, job in enumerate(jobs)
        ]
        log.info(
            "%s: %d jobs on the Dask cluster at %s",
            label,
            len(jobs),
            client.scheduler.address,
        )
        try:
            if on_done is not None:
                index = {future.key: i for i, future in enumerate(futures)}
                for future in as_completed(futures):
                    on_done(jobs[index[future.key]], future.result())
            return client.gather(futures)
        finally:
            client.cancel([*futures, *inputs.values()])
