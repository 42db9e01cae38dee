"""Runs left RUNNING by a process that no longer exists are marked KILLED."""

from __future__ import annotations

import logging
import os
import socket

import mlflow
from kedro.framework.hooks import hook_impl
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

from emomucs.hooks.identity import RUN_HOST, RUN_PID

log = logging.getLogger(__name__)


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def close_dead_runs(client: MlflowClient, experiment: str, current: str) -> None:
    """Mark KILLED the runs of ``experiment`` left RUNNING by a process of this host
    that no longer exists (killed by SIGKILL, out of memory, power loss).

    Runs of other hosts, of live processes and without the process tags
    (``run_pid``, ``run_host``, set by :class:`MlflowVariantRunsHook
    <emomucs.hooks.mlflow_runs.MlflowVariantRunsHook>`) are left as they are:
    whether they still run cannot be told from here.
    """
    host = socket.gethostname()
    try:
        running = client.search_runs(
            [experiment],
            filter_string=(
                f"attributes.status = 'RUNNING' and tags.{RUN_HOST} = '{host}'"
            ),
            max_results=1000,
        )
        for run in running:
            pid = run.data.tags.get(RUN_PID, "")
            if run.info.run_id == current or not pid.isdigit():
                continue
            if process_alive(int(pid)):
                continue
            reason = (
                f"process {pid} on {host} ended without closing this run "
                f"(killed?); marked KILLED by run {current}"
            )
            client.set_tag(run.info.run_id, "end_reason", reason)
            client.set_terminated(
                run.info.run_id, RunStatus.to_string(RunStatus.KILLED)
            )
            log.warning("MLflow run %s: %s", run.info.run_id, reason)
    except Exception as error:  # tidying must never stop a run
        log.warning("MLflow: could not check for dead runs: %s", error)


class MarkKilledRunsHook:
    """When a run starts, marks KILLED its experiment's runs that a dead process of
    this host left RUNNING, with an ``end_reason`` tag saying so."""

    @hook_impl(trylast=True)  # after kedro-mlflow has opened the run
    def before_pipeline_run(self, run_params, pipeline, catalog) -> None:
        run = mlflow.active_run()
        if run is not None:
            close_dead_runs(MlflowClient(), run.info.experiment_id, run.info.run_id)
