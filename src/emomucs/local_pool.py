"""Worker processes on this machine for a node's independent jobs.

Without a Dask cluster a node's jobs (separation batches, nested-CV splits) ran one
after another on one core, because one torch thread per job is what these small
models run best on (docs/performance.md). :class:`LocalPool` runs them in as many
processes as there are cores instead: this process, which would otherwise only wait,
runs jobs itself, and one worker process per other core runs the rest (a process
fewer than a pool of pure workers: each holds torch and its own copy of the inputs).
Each worker is a fresh interpreter (``python -m emomucs.local_pool``: nothing of the
parent's threads, locks or ``__main__`` is inherited), runs each job with the
parent's torch thread count, and serves one function's jobs for the rest of the
``kedro run`` (a map of another function gets a fresh worker, which does not carry
the heap the other kind of job left), so importing torch is paid once per kind of
job, not once per node. A thread of this process hands
the workers their jobs while the thread that called the map runs its own.

The jobs' shared inputs (features, the separator) are pickled once per
:meth:`LocalPool.map` and sent once to each worker that runs one of its jobs; a
worker drops them when the map ends. Jobs must be self-contained (see
:mod:`emomucs.fanout`), so a job gives the same result in a worker as here.
"""

from __future__ import annotations

import atexit
import ctypes
import gc
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from emomucs.heap import with_huge_pages

log = logging.getLogger(__name__)

AUTO = "auto"

_PR_SET_PDEATHSIG = 1  # linux/prctl.h

_THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


class WorkerDiedError(RuntimeError):
    """A worker process ended while it ran a job (killed, out of memory, crashed)."""


_here = threading.local()
"""``running_a_job`` is set in a thread while it runs one of a map's jobs."""


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_workers(workers: int | str | None) -> int:
    """Worker processes for ``workers``: ``auto`` (or None) is one per usable core.

    Raises:
        ValueError: Neither ``auto`` nor a positive integer.
    """
    if workers is None or workers == AUTO:
        return usable_cores()
    try:
        count = int(workers)
    except (TypeError, ValueError):
        count = 0
    if count < 1 or str(workers).strip() != str(count):
        raise ValueError(
            f"workers must be 'auto' or a positive integer, got {workers!r}"
        )
    return count


def _torch_threads() -> int | None:
    """The parent's torch thread count, for workers to run with; None when the
    parent has not imported torch (its jobs do not use it)."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


def _send(connection: Connection, message: tuple) -> None:
    # plain pickle: multiprocessing's own pickler hands torch tensors over as shared
    # memory through a side channel that needs a multiprocessing parent
    connection.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def _receive(connection: Connection) -> Any:
    # The one unpickling in the package outside Demucs repos: a message from the
    # other end of a socketpair only this parent and its own worker hold, never a file
    return pickle.loads(connection.recv_bytes())


def release_memory() -> None:
    """Give freed heap memory back to the system (glibc keeps it otherwise, so an
    idle worker would hold its largest job's peak for the rest of the run). Once a
    map, not once a job: the next job would fault the pages in again."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _end_with(parent: int) -> None:
    """Have the kernel end this worker when its parent process ends (killed, timed
    out), instead of it finishing a job nobody will read (Linux; elsewhere the
    worker ends at its next message)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(
            _PR_SET_PDEATHSIG, signal.SIGTERM
        )
    except (OSError, AttributeError):  # not Linux
        return
    if os.getppid() != parent:  # it ended before the request took effect
        sys.exit(0)


def _serve(connection: Connection) -> None:
    """A worker's loop: keep the latest shared inputs, run jobs, send results."""
    os.environ["EMOMUCS_WORKER"] = "1"  # progress bars stay in the parent
    logging.basicConfig(level=logging.WARNING, format="worker %(process)d: %(message)s")
    shared: dict[str, Any] = {}
    token = None
    try:
        while True:
            message = _receive(connection)
            kind = message[0]
            if kind == "shared":
                token, threads = message[1], message[2]
                shared = _receive(connection)
                if threads is not None:
                    import torch

                    torch.set_num_threads(threads)
            elif kind == "forget":
                shared, token = {}, None
                release_memory()
            elif kind == "job":
                _, job_token, index, function, job = message
                if job_token != token:
                    raise RuntimeError("a job arrived without its shared inputs")
                try:
                    reply = ("done", index, function(job, **shared))
                except BaseException as error:  # sent back; the parent re-raises it
                    reply = ("error", index, _picklable(error))
                _send(connection, reply)
                del reply
            elif kind == "stop":
                return
    except (EOFError, KeyboardInterrupt):  # the parent is gone or interrupted
        return


def _picklable(error: BaseException) -> BaseException:
    """``error`` with its worker traceback attached, or a RuntimeError saying what
    it was when it cannot travel back."""
    text = "".join(traceback.format_exception(error))
    try:
        error.add_note(f"In a worker process:\n{text}")
        pickle.dumps(error)
        return error
    except Exception:
        return RuntimeError(
            f"{type(error).__name__}: {error}\nIn a worker process:\n{text}"
        )


@dataclass
class _Worker:
    process: subprocess.Popen
    connection: Connection
    running: int | None = None  # index of its job
    serves: str | None = None  # the function of its maps so far


@dataclass
class LocalPool:
    """Jobs in ``size`` processes: this one and ``size - 1`` spawned workers
    (started on first use)."""

    size: int
    _workers: list[_Worker] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _start(self) -> None:
        """Start workers up to ``size``, replacing any that ended while idle."""
        for worker in [w for w in self._workers if w.process.poll() is not None]:
            log.warning(
                "worker process %d had ended (exit code %s); starting another",
                worker.process.pid,
                worker.process.returncode,
            )
            worker.connection.close()
            self._workers.remove(worker)
        for _ in range(self.size - 1 - len(self._workers)):
            ours, theirs = socket.socketpair()
            # a plain `python -m` child: nothing of the parent's __main__ is re-run
            # (multiprocessing's spawn would re-import a script without a main guard)
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    __name__,
                    str(theirs.fileno()),
                    str(os.getpid()),
                ],
                pass_fds=[theirs.fileno()],
                env=with_huge_pages(
                    {
                        **os.environ,
                        "PYTHONPATH": os.pathsep.join(sys.path),
                        # the workers are the parallelism: one BLAS and OpenMP thread
                        # each (torch's count is set per map, from the parent's)
                        **dict.fromkeys(_THREAD_VARIABLES, "1"),
                    }
                ),
            )
            theirs.close()
            self._workers.append(_Worker(process, Connection(ours.detach())))

    def _retire_workers_of_other_functions(self, function: str) -> None:
        """Replace the workers that ran another function's jobs with fresh ones.

        A worker's heap keeps the shape of what it did: after separating and
        computing features it holds about 100 MB more while training than a fresh
        process would, which the two processes' peak can ill afford. Starting one
        costs an interpreter and its imports, once per kind of job, not per map.
        """
        retiring = [
            worker
            for worker in self._workers
            if worker.serves is not None and worker.serves != function
        ]
        for worker in retiring:
            log.info(
                "worker process %d ran %s; a fresh one runs %s",
                worker.process.pid,
                worker.serves,
                function,
            )
            self._workers.remove(worker)
        self._stop(retiring)

    def close(self) -> None:
        """Stop the workers (a worker in a job is killed)."""
        self._stop(self._workers)
        self._workers = []

    @staticmethod
    def _stop(workers: list[_Worker]) -> None:
        for worker in workers:
            if worker.running is None:
                try:
                    _send(worker.connection, ("stop",))
                except OSError:
                    pass
            else:
                worker.process.kill()
        for worker in workers:
            try:
                worker.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
            worker.connection.close()

    def map(
        self,
        function: Callable[..., Any],
        jobs: Sequence[Any],
        shared: dict[str, Any],
        label: str,
        on_done: Callable[[Any, Any], object] | None = None,
    ) -> list[Any]:
        """``[function(job, **shared) for job in jobs]``, in this process and the
        workers.

        ``on_done`` sees each job as it finishes (in the order they finish, one call
        at a time). The first job that raises ends the map: the workers are stopped
        (a job of theirs that finished is kept wherever it writes, e.g. a cache) and
        the error is raised here. A worker's error is raised once the job this
        process is running has ended.

        Raises:
            WorkerDiedError: A worker ended during a job; names the job's index.
        """
        with self._lock:  # one map at a time (a threaded runner's nodes take turns)
            try:
                results = self._map(function, jobs, shared, label, on_done)
            except BaseException:
                self.close()  # busy workers would answer a map that has ended
                raise
        release_memory()  # the pickled shared inputs, this process's jobs' peak
        return results

    def _map(self, function, jobs, shared, label, on_done) -> list[Any]:
        name = f"{function.__module__}.{function.__qualname__}"
        self._retire_workers_of_other_functions(name)
        self._start()
        workers = self._workers[: len(jobs) - 1]
        for worker in workers:
            worker.serves = name
        return _MapRun(function, jobs, shared, label, on_done, workers).run()


@dataclass
class _MapRun:
    """One :meth:`LocalPool.map`: the calling thread runs jobs while a second thread
    hands the workers theirs and takes their results."""

    function: Callable[..., Any]
    jobs: Sequence[Any]
    shared: dict[str, Any]
    label: str
    on_done: Callable[[Any, Any], object] | None
    workers: list[_Worker]
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    todo: deque = field(init=False)
    results: list[Any] = field(init=False)
    failure: list[BaseException] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.todo = deque(range(len(self.jobs)))
        self.results = [None] * len(self.jobs)

    def run(self) -> list[Any]:
        self._start_workers()
        dispatcher = threading.Thread(
            target=self._serve_workers, name=f"{self.label}-workers"
        )
        dispatcher.start()
        try:
            while (index := self._next_job()) is not None:
                _here.running_a_job = True
                try:
                    value = self.function(self.jobs[index], **self.shared)
                finally:
                    _here.running_a_job = False
                self._finish(index, value)
        except BaseException:
            self.stop.set()
            dispatcher.join()
            raise
        dispatcher.join()  # the workers' last jobs
        if self.failure:
            raise self.failure[0]
        for worker in self.workers:
            _send(worker.connection, ("forget",))
        return self.results

    def _start_workers(self) -> None:
        """Each worker gets the shared inputs and its first job; then their pickle
        is freed."""
        payload = pickle.dumps(self.shared, protocol=pickle.HIGHEST_PROTOCOL)
        log.info(
            "%s: %d jobs on %d processes (this one and %d worker%s; shared inputs "
            "%.1f MB)",
            self.label,
            len(self.jobs),
            len(self.workers) + 1,
            len(self.workers),
            "" if len(self.workers) == 1 else "s",
            len(payload) / 1e6,
        )
        threads = _torch_threads()
        for worker in self.workers:
            _send(worker.connection, ("shared", self.token, threads))
            worker.connection.send_bytes(payload)
            self._hand_out(worker, self.todo.popleft())

    def _next_job(self) -> int | None:
        with self.lock:
            return self.todo.popleft() if self.todo and not self.failure else None

    def _finish(self, index: int, value: Any) -> None:
        with self.lock:
            self.results[index] = value
            if self.on_done is not None:
                self.on_done(self.jobs[index], value)

    def _hand_out(self, worker: _Worker, index: int) -> None:
        job = ("job", self.token, index, self.function, self.jobs[index])
        _send(worker.connection, job)
        worker.running = index

    def _serve_workers(self) -> None:
        try:
            self._serve_workers_until_done()
        except BaseException as error:  # e.g. on_done raised: the map must fail
            self.failure.append(error)

    def _serve_workers_until_done(self) -> None:
        while not self.stop.is_set():
            busy = [w for w in self.workers if w.running is not None]
            if not busy:
                return
            ready = wait([w.connection for w in busy], timeout=0.2)
            for worker in busy:
                if worker.connection in ready and not self._take_result(worker):
                    return

    def _take_result(self, worker: _Worker) -> bool:
        """The worker's answer: its result kept and its next job handed out (True),
        or its error, or its death, kept as the map's failure (False)."""
        try:
            kind, index, value = _receive(worker.connection)
        except (EOFError, OSError):  # its end of the socket closed: it died
            self.failure.append(
                WorkerDiedError(
                    f"{self.label}: worker process {worker.process.pid} ended (exit "
                    f"code {worker.process.wait()}) while running job "
                    f"{worker.running}: {self.jobs[worker.running]!r}"
                )
            )
            return False
        if kind == "error":
            self.failure.append(value)
            return False
        worker.running = None
        self._finish(index, value)
        index = self._next_job()
        if index is not None:
            self._hand_out(worker, index)
        return True


_pools: dict[int, LocalPool] = {}


def pool(size: int) -> LocalPool:
    """The process-wide pool of ``size`` workers (kept between nodes)."""
    if size not in _pools:
        _pools[size] = LocalPool(size)
    return _pools[size]


@atexit.register
def _close_pools() -> None:
    for each in _pools.values():
        each.close()


def in_worker() -> bool:
    """True in a :class:`LocalPool` worker process, and in a thread of this process
    while it runs one of a map's jobs: progress bars stay with the node, and a job
    never starts a pool of its own."""
    return os.environ.get("EMOMUCS_WORKER") == "1" or getattr(
        _here, "running_a_job", False
    )


if __name__ == "__main__":
    _end_with(int(sys.argv[2]))
    _serve(Connection(int(sys.argv[1])))
