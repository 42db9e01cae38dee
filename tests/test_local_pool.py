"""Local worker processes (``emomucs.local_pool``): the loop's results, in its order,
from this process and a worker; errors and dead workers named. That separation and nested CV give
exactly what one process gives: tests/separation/test_separate.py and
tests/training/test_nested_cv.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from emomucs.fanout import map_in_order
from emomucs.local_pool import (
    WorkerDiedError,
    in_worker,
    pool,
    resolve_workers,
    usable_cores,
)


def _square_where(job: int, offset: int) -> tuple[int, int]:
    return job * job + offset, os.getpid()


def _fail_on_three(job: int) -> int:
    if job == 3:
        raise ValueError(f"job {job} cannot be done")
    return job


def _fail_in_a_worker(job: int) -> int:
    if os.environ.get("EMOMUCS_WORKER") == "1":
        raise ValueError(f"job {job} cannot be done in a worker")
    return job


def _die_in_a_worker(job: int) -> int:
    if os.environ.get("EMOMUCS_WORKER") == "1":
        os._exit(7)  # as a worker killed for memory
    return job


def _square_slowly_where(job: int, offset: int) -> tuple[int, int]:
    time.sleep(0.05)
    return _square_where(job, offset)


def test_two_processes_give_the_loop_results_in_the_jobs_order():
    jobs = list(range(20, 0, -1))
    seen = []
    results = map_in_order(
        _square_slowly_where,
        jobs,
        shared={"offset": 10},
        on_done=lambda job, _: seen.append(job),
        workers=2,
    )
    assert [value for value, _ in results] == [j * j + 10 for j in jobs]
    where = {pid for _, pid in results}
    # this process runs jobs too, beside one worker process
    assert os.getpid() in where and len(where) == 2
    assert sorted(seen) == sorted(jobs)
    assert not in_worker()  # only while this process runs one of the jobs
    # the worker stays for the next map, which gets its own shared inputs
    again = map_in_order(
        _square_slowly_where, [2, 3, 4], shared={"offset": -1}, workers=2
    )
    assert [value for value, _ in again] == [3, 8, 15]
    assert {pid for _, pid in again} <= where


def _tunables_where(job: int) -> tuple[str, int]:
    time.sleep(0.05)
    return os.environ.get("GLIBC_TUNABLES", ""), os.getpid()


def test_workers_start_with_mallocs_blocks_on_huge_pages(monkeypatch):
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    results = map_in_order(_tunables_where, list(range(8)), workers=2)
    in_workers = {tunables for tunables, pid in results if pid != os.getpid()}
    assert in_workers == {"glibc.malloc.hugetlb=1"}


def _pid_slowly(job: int) -> int:
    time.sleep(0.05)
    return os.getpid()


def _workers_of(results: list[int]) -> set[int]:
    return set(results) - {os.getpid()}


def test_a_worker_serves_one_function_and_another_function_gets_a_fresh_one():
    first = _workers_of(map_in_order(_pid_slowly, list(range(6)), workers=2))
    again = _workers_of(map_in_order(_pid_slowly, list(range(6)), workers=2))
    assert len(first) == 1 and again == first  # kept between maps of one function
    other = _workers_of(
        [pid for _, pid in map_in_order(_tunables_where, list(range(6)), workers=2)]
    )
    assert len(other) == 1 and other != first
    with pytest.raises(ProcessLookupError):  # the retired worker has ended
        os.kill(first.pop(), 0)


def test_jobs_here_are_quiet_and_start_no_pool_of_their_own():
    flags = map_in_order(_in_worker_flag, [0, 1, 2, 3], workers=2)
    assert flags == [True] * 4


def test_one_worker_or_one_job_runs_the_loop_here():
    assert map_in_order(_square_where, [4], shared={"offset": 0}, workers=2) == [
        (16, os.getpid())
    ]
    results = map_in_order(_square_where, [1, 2], shared={"offset": 0}, workers=1)
    assert {pid for _, pid in results} == {os.getpid()}


def test_a_job_error_reaches_the_caller_wherever_it_ran():
    with pytest.raises(ValueError, match="job 3 cannot be done"):
        map_in_order(_fail_on_three, [1, 2, 3, 4], workers=2)
    with pytest.raises(ValueError, match="job 1 cannot be done in a worker") as raised:
        map_in_order(_fail_in_a_worker, [1, 2, 3, 4], workers=2)  # 1 goes first
    assert any("In a worker process" in note for note in raised.value.__notes__)
    assert map_in_order(_fail_on_three, [1, 2], workers=2) == [1, 2]  # usable again


def test_a_failing_progress_callback_fails_the_map_wherever_the_job_ran():
    def fail(job, _):
        raise RuntimeError(f"progress of {job} broke")

    with pytest.raises(RuntimeError, match="progress of . broke"):
        map_in_order(
            _square_slowly_where,
            [1, 2, 3],
            shared={"offset": 0},
            workers=2,
            on_done=fail,
        )
    assert map_in_order(_fail_on_three, [1, 2], workers=2) == [1, 2]  # usable again


def test_a_dead_worker_is_named_with_its_job_and_a_new_one_takes_over():
    with pytest.raises(WorkerDiedError, match=r"exit code 7\) while running job 0: 5"):
        map_in_order(_die_in_a_worker, [5, 6, 7, 8], workers=2)
    assert map_in_order(_fail_on_three, [1, 2, 4], workers=2) == [1, 2, 4]


def test_a_worker_that_ended_between_maps_is_replaced():
    first = {
        pid
        for _, pid in map_in_order(
            _square_slowly_where, [1, 2, 3], shared={"offset": 0}, workers=2
        )
    }
    victim = next(iter(first - {os.getpid()}))
    os.kill(victim, signal.SIGKILL)
    for worker in pool(2)._workers:
        if worker.process.pid == victim:
            worker.process.wait(timeout=10)
    again = map_in_order(_square_where, [1, 2, 3, 4], shared={"offset": 0}, workers=2)
    assert [value for value, _ in again] == [1, 4, 9, 16]
    assert victim not in {pid for _, pid in again}


def test_a_script_without_a_main_guard_can_use_the_workers(tmp_path):
    # multiprocessing's spawn would run such a script again in every worker
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            from emomucs.fanout import map_in_order
            from tests.test_local_pool import _square_where
            print([v for v, _ in map_in_order(
                _square_where, [1, 2, 3], shared={"offset": 1}, workers=2)])
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[2, 5, 10]"


def _note_pid_and_sleep(job: int, folder: str) -> None:
    (Path(folder) / f"{os.getpid()}.pid").touch()
    time.sleep(120)


def _ended(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")  # a zombie nobody reaps has ended too


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_workers_end_with_a_killed_parent(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from emomucs.fanout import map_in_order
            from tests.test_local_pool import _note_pid_and_sleep
            map_in_order(_note_pid_and_sleep, [0, 1, 2], shared={{"folder": {str(tmp_path)!r}}},
                         workers=3)
            """
        )
    )
    parent = subprocess.Popen(
        [sys.executable, str(script)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("*.pid"))) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        workers = {int(f.stem) for f in tmp_path.glob("*.pid")} - {parent.pid}
        assert len(workers) == 2
    finally:
        parent.kill()  # as a scheduler's timeout or the OOM killer would
        parent.wait()
    deadline = time.monotonic() + 20
    while not all(_ended(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert all(_ended(pid) for pid in workers)  # not still busy with their jobs


def test_workers_setting():
    assert resolve_workers("auto") == resolve_workers(None) == usable_cores() >= 1
    assert resolve_workers(3) == resolve_workers("3") == 3
    for bad in (0, -1, "two", 1.5):
        with pytest.raises(ValueError, match="workers must be 'auto'"):
            resolve_workers(bad)


def test_workers_run_jobs_with_the_parents_torch_threads():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        pool(2)  # started already or now: the threads travel with each map
        threads = map_in_order(_torch_threads_of, [0, 1, 2], workers=2)
    finally:
        torch.set_num_threads(before)
    assert threads == [1, 1, 1]


def _torch_threads_of(job: int) -> int:
    return torch.get_num_threads()


def _in_worker_flag(job: int) -> bool:
    return in_worker()
