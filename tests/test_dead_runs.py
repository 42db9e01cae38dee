"""Runs left RUNNING by a killed ``kedro run`` are marked KILLED by the next run."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap

import mlflow
from kedro.pipeline import Pipeline
from mlflow.tracking import MlflowClient

from emomucs.hooks import RUN_HOST, RUN_PID, MarkKilledRunsHook, MlflowVariantRunsHook
from tests.tiny_project import subprocess_env

KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys
    import mlflow
    from kedro.pipeline import Pipeline
    from emomucs.hooks import MlflowVariantRunsHook

    mlflow.set_tracking_uri(sys.argv[1])
    mlflow.set_experiment("emomucs")
    run = mlflow.start_run()
    MlflowVariantRunsHook().before_pipeline_run({}, Pipeline([]), None)
    print(run.info.run_id, os.getpid(), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_runs_of_dead_processes_are_marked_killed_at_the_next_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, uri],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    killed_id, killed_pid = done.stdout.split()
    client = MlflowClient(uri)
    assert client.get_run(killed_id).info.status == "RUNNING"
    experiment = client.get_run(killed_id).info.experiment_id
    host = socket.gethostname()
    alive = client.create_run(
        experiment, tags={RUN_PID: str(os.getpid()), RUN_HOST: host}
    ).info.run_id
    elsewhere = client.create_run(
        experiment, tags={RUN_PID: killed_pid, RUN_HOST: "another-host"}
    ).info.run_id
    untagged = client.create_run(experiment).info.run_id

    mlflow.set_tracking_uri(uri)
    try:
        mlflow.set_experiment("emomucs")
        with mlflow.start_run() as current:
            # as settings.py registers them
            MarkKilledRunsHook().before_pipeline_run({}, Pipeline([]), None)
            hook = MlflowVariantRunsHook()
            hook.before_pipeline_run({}, Pipeline([]), None)
            hook.after_pipeline_run({}, Pipeline([]), None)
            assert client.get_run(current.info.run_id).info.status == "RUNNING"
            tags = client.get_run(current.info.run_id).data.tags
            assert tags[RUN_PID] == str(os.getpid()) and tags[RUN_HOST] == host
    finally:
        mlflow.set_tracking_uri(None)

    killed = client.get_run(killed_id)
    assert killed.info.status == "KILLED" and killed.info.end_time is not None
    assert f"process {killed_pid} on {host} ended" in killed.data.tags["end_reason"]
    for run_id in (alive, elsewhere, untagged):  # cannot be told dead: left alone
        assert client.get_run(run_id).info.status == "RUNNING"
