"""``kedro run --runner=emomucs.runners.DaskRunner`` on a local cluster of two worker
processes gives what ``SequentialRunner`` gives, and survives a worker killed mid-run;
so does a plain run whose separation and training fan out to two local worker
processes (``workers: 2``) instead of one (``workers: 1``).

Two throw-away copies of the tiny project (the same synthetic corpus and tiny Demucs
separator) run ``emomucs_late`` up to its C1D finetune and freeze variants
(ingestion → separation → features → the four single-source C1D models → the two
EmoMucs variants → metrics), then ``--pipeline=reporting`` (the results table of what
ran). One runs sequentially, the other on a local cluster this test owns
(two worker processes of one thread, reached through ``EMOMUCS_DASK_SCHEDULER``), so
nodes run side by side and separation and training fan out one task per batch and per
split. While the Dask run trains, the test kills (SIGKILL) the worker process running
a training task; the nanny starts a new one and Dask runs the task again.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from emomucs.atomic import TEMPORARY_SUFFIX, write_atomically, write_text_atomically
from emomucs.fanout import map_in_order
from emomucs.runners import SCHEDULER_ENV, local_cluster
from tests.test_determinism import OVERRIDES as DETERMINISM_OVERRIDES
from tests.tiny_project import (
    kedro,
    latest,
    make_project,
    make_synthetic_corpus,
    merge,
    write_tiny_repo,
)

OVERRIDES = merge(
    DETERMINISM_OVERRIDES,
    {
        "training": {"repeats": 1, "max_epochs": 1, "workers": 1},
        "separation": {"workers": 1},
        "contributions": {"shapley": False},
    },
)
POOLED = merge(OVERRIDES, {"training": {"workers": 2}, "separation": {"workers": 2}})
VARIANTS = [
    *(f"sources.c1d_{source}" for source in ("bass", "drums", "other", "vocals")),
    "emomucs_late.c1d_finetune",
    "emomucs_late.c1d_freeze",
]
# EmoMucs late finetune and freeze (scored) with the four single-source models they
# start from (trained); the rest of emomucs_late repeats these nodes with other
# networks. Then the results table of what was scored.
RUN = (
    "run",
    "--pipeline=emomucs_late",
    f"--to-outputs={','.join(f'{v}.cv_metrics' for v in VARIANTS[-2:])}",
    "--env=tiny",
)
REPORT = ("run", "--pipeline=reporting", "--env=tiny")
DASK = "--runner=emomucs.runners.DaskRunner"
CACHES = ("data/06_models/cv_cache", "data/03_primary/stems_cache")
VERSION = r"/\d{4}-\d{2}-\d{2}T[\d.]+Z/"


SPLIT_TASK = re.compile(r"^train-.*-[0-9a-f]{8}-\d+$")
"""Keys of the nested-CV fan-out's split tasks (``emomucs.fanout``)."""


class _Killer(threading.Thread):
    """Kills, once, the worker process that is running a task whose key matches
    ``pattern``, and records the tasks it was running and its process id."""

    def __init__(self, client, pattern: re.Pattern) -> None:
        super().__init__(daemon=True)
        self.client, self.pattern = client, pattern
        self.pids = client.run(os.getpid)  # worker address -> process id
        self.killed: tuple[list[str], int] | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for address, keys in self.client.processing().items():
                if address in self.pids and any(
                    self.pattern.match(str(k)) for k in keys
                ):
                    os.kill(self.pids[address], signal.SIGKILL)
                    self.killed = ([str(k) for k in keys], self.pids[address])
                    return
            time.sleep(0.02)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """The sequential, pooled and Dask projects after their runs, and what was
    killed."""
    from distributed import Client

    root = tmp_path_factory.mktemp("dask")
    sequential = make_project(root / "sequential", OVERRIDES)
    pooled = make_project(root / "pooled", POOLED)
    dask = make_project(root / "dask", OVERRIDES)
    write_tiny_repo(sequential / "data/06_models/separator")
    make_synthetic_corpus(sequential)
    for folder in ("data/01_raw", "data/06_models/separator"):
        shutil.copytree(sequential / folder, dask / folder)
        shutil.copytree(sequential / folder, pooled / folder)
    kedro(sequential, *RUN)
    kedro(sequential, *REPORT)
    wide = {"COLUMNS": "250"}  # log lines unwrapped, to be searched
    pooled_output = kedro(pooled, *RUN, env=wide) + kedro(pooled, *REPORT, env=wide)

    here = Path.cwd()
    os.chdir(dask)  # workers resolve the caches' relative paths from their folder
    try:
        with (
            local_cluster(2, 1) as cluster,
            Client(cluster) as client,
        ):
            killer = _Killer(client, SPLIT_TASK)
            killer.start()
            env = {SCHEDULER_ENV: cluster.scheduler_address}
            try:
                output = kedro(dask, *RUN, DASK, env=env)
            finally:
                killer.stop.set()
                killer.join()
            output += kedro(dask, *REPORT, DASK, env=env)
            # how many times each task on the killed worker was started
            starts = {
                key: sum(t[2] == "processing" for t in cluster.scheduler.story(key))
                for key in (killer.killed[0] if killer.killed else [])
            }
    finally:
        os.chdir(here)
    return {
        "sequential": sequential,
        "pooled": pooled,
        "pooled_output": pooled_output,
        "dask": dask,
        "killed": killer.killed,
        "starts": starts,
        "output": output,
    }


def _files(project: Path, folder: str = "data") -> list[str]:
    """Every file under ``folder``, version timestamps replaced by ``<v>``; the
    temporary file a killed write leaves (never read) is left out."""
    root = project / folder
    names = (
        str(p.relative_to(project))
        for p in root.rglob("*")
        if p.is_file() and not p.name.endswith(TEMPORARY_SUFFIX)
    )
    return sorted(pd.Series(list(names)).str.replace(VERSION, "/<v>/", regex=True))


def _compared_tables() -> list[str]:
    tables = [
        "data/08_reporting/results_table.csv",
        "data/08_reporting/results_differences.csv",
    ]
    tables += [f"data/08_reporting/{v}/cv_metrics.csv" for v in VARIANTS[-2:]]
    for output in ("cv_predictions.csv", "training_log.csv"):
        tables += [f"data/07_model_output/{v}/{output}" for v in VARIANTS]
    return tables


@pytest.mark.slow
def test_dask_runner_gives_the_sequential_results_table_and_metrics(runs):
    sequential, dask = runs["sequential"], runs["dask"]
    assert "Dask: scheduler" in runs["output"]
    tables = _compared_tables()
    for table in tables:
        expected = latest(sequential, table).read_bytes()
        assert latest(dask, table).read_bytes() == expected, table
    results = pd.read_csv(latest(dask, tables[0]))
    assert sorted(results["variant"]) == VARIANTS[-2:]
    assert results["r2_valence_mean"].notna().all()


@pytest.mark.slow
def test_dask_run_survives_a_killed_worker_with_nothing_lost_or_duplicated(runs):
    sequential, dask = runs["sequential"], runs["dask"]
    assert runs["killed"] is not None, "no training task was ever seen running"
    _, pid = runs["killed"]
    # a task of the dead worker was started again on another
    assert max(runs["starts"].values()) >= 2, runs["starts"]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)

    # the same artifacts, one version each, and the same cache entries: nothing
    # lost, nothing written twice under another name
    assert _files(dask) == _files(sequential)
    for cache in CACHES:
        entries = sorted(p for p in (dask / cache).rglob("*") if p.is_file())
        finished = [p for p in entries if not p.name.endswith(TEMPORARY_SUFFIX)]
        assert [str(p.relative_to(dask)) for p in finished] == [
            str(p.relative_to(sequential))
            for p in sorted((sequential / cache).rglob("*"))
            if p.is_file()
        ]
    for entry in sorted((dask / CACHES[0]).rglob("*.pt")):
        same = sequential / entry.relative_to(dask)
        a, b = torch.load(entry, weights_only=True), torch.load(same, weights_only=True)
        assert a["best_loss"] == b["best_loss"] and a["history"] == b["history"]
        for name, tensor in a["checkpoint"]["state"].items():
            assert torch.equal(tensor, b["checkpoint"]["state"][name]), entry


@pytest.mark.slow
def test_two_local_workers_give_the_sequential_results_table_and_metrics(runs):
    sequential, pooled = runs["sequential"], runs["pooled"]
    # both fan-outs went to the workers (one log line each time)
    assert re.search(
        r"separate: \d+ jobs on 2 processes \(this one and 1 worker;",
        runs["pooled_output"],
    )
    assert re.search(
        r"train-.*: \d+ jobs on 2 processes \(this one and 1 worker;",
        runs["pooled_output"],
    )
    for table in _compared_tables():
        expected = latest(sequential, table).read_bytes()
        assert latest(pooled, table).read_bytes() == expected, table
    assert _files(pooled) == _files(sequential)


def test_an_atomic_write_that_fails_keeps_the_old_file_and_leaves_no_trace(tmp_path):
    target = write_text_atomically(tmp_path / "entry.json", "old")

    def half_then_fail(stream) -> None:
        stream.write(b"new, but cut")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, half_then_fail)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry.json"]
    write_atomically(target, lambda stream: stream.write(b"new"))
    assert target.read_text() == "new"


def _square(job: int, offset: int) -> int:
    return job * job + offset


def test_fan_out_without_a_cluster_is_the_plain_loop_in_order():
    seen = []
    results = map_in_order(
        _square, [3, 1, 2], shared={"offset": 10}, on_done=lambda j, r: seen.append(j)
    )
    assert results == [19, 11, 14] and seen == [3, 1, 2]


def _square_where(job: int, offset: int) -> tuple[int, str | None]:
    from distributed import get_worker

    return job * job + offset, get_worker().address


def test_fan_out_on_a_cluster_keeps_the_order_of_the_jobs():
    from distributed import Client, LocalCluster

    jobs = list(range(12, 0, -1))
    seen = []
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster),
    ):
        results = map_in_order(
            _square_where,
            jobs,
            shared={"offset": 1},
            on_done=lambda job, _: seen.append(job),
        )
        workers = set(cluster.scheduler.workers)
    assert [value for value, _ in results] == [j * j + 1 for j in jobs]
    assert {where for _, where in results} <= workers  # every job ran on a worker
    assert sorted(seen) == sorted(jobs)
