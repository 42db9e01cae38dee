"""A Kedro runner that runs each node's function as a task on a Dask cluster.

``kedro run --runner=emomucs.runners.DaskRunner`` runs the pipeline's nodes on a
``dask.distributed`` cluster: the one at ``--runner-params=scheduler=tcp://HOST:8786``,
at ``$EMOMUCS_DASK_SCHEDULER`` or at the ``dask.scheduler`` parameter (in that order),
or else a ``LocalCluster`` of ``dask.n_workers`` processes (default: one per core)
started for the run and closed after it. Nodes run as soon as their inputs exist, so
independent variants train side by side, and the heavy nodes fan out further
(:mod:`emomucs.fanout`: one task per batch of tracks, per trained split).

Only the node's *function* runs on the cluster. Loading its inputs, saving its
outputs and every Kedro hook stay in this process, in this thread, as under
``SequentialRunner``: MLflow (whose active run is per thread), the variant hooks and
the catalog's versioned datasets see a sequential run. A worker that dies mid-node
has saved nothing; Dask runs the function again on another worker (up to
``distributed.scheduler.allowed-failures`` times), and the outputs are saved once,
here. A node function that raises is not retried: the run stops as it would
sequentially.

Adapted from Kedro's DaskRunner recipe to Kedro 1.x's :class:`AbstractRunner`
(``run`` checks and warms the catalog, then calls ``_run``); the recipe's published
Dask datasets are not needed, since the catalog stays here.
"""

from __future__ import annotations

import inspect
import logging
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import chain
from typing import TYPE_CHECKING, Any

from kedro.runner import AbstractRunner
from kedro.runner.task import Task

if TYPE_CHECKING:
    from distributed import Client
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline
    from kedro.pipeline.node import Node
    from pluggy import PluginManager

SCHEDULER_ENV = "EMOMUCS_DASK_SCHEDULER"
"""Environment variable holding a scheduler address (``tcp://host:8786``)."""

PARAMETERS = "params:dask"
"""The parameter group the runner reads (``conf/base/parameters/dask.yml``)."""

TRAINING = "params:training"


@contextmanager
def local_cluster(n_workers: int, threads_per_worker: int = 1):
    """A ``LocalCluster`` of worker processes as the runner starts one.

    Dask starts workers with ``MALLOC_TRIM_THRESHOLD_=65536`` (to hand freed memory
    back to the system sooner); training torch models that way cost about 1.5-2×
    the CPU time of the same splits without it on this project's 2-core machine
    (``benchmarks/dask_scaling.py``, noisy), so these workers keep glibc's default.
    """
    import dask
    from distributed import LocalCluster

    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    # set while the cluster lives: the nanny reads it again to restart a worker
    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ": environ}),
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            dashboard_address=None,
        ) as cluster,
    ):
        yield cluster


def run_node_function(node: Node, inputs: dict[str, Any]) -> dict[str, Any]:
    """The node's outputs from its loaded inputs: the task a worker runs."""
    return node.run(inputs)


class DaskRunner(AbstractRunner):
    """Runs nodes on a Dask cluster; loads, saves and hooks stay in this process.

    Args:
        scheduler: Address of a running scheduler; overrides
            ``$EMOMUCS_DASK_SCHEDULER`` and the ``dask.scheduler`` parameter.
        n_workers: Worker processes of the local cluster started when no scheduler
            is given; overrides ``dask.n_workers`` (default: one per CPU core).
        threads_per_worker: Threads per local worker (default 1: torch threads
            and data stay per process).
        is_async: Kedro's flag; loads and saves happen in this process one at a
            time either way, so it changes nothing here.
    """

    def __init__(
        self,
        scheduler: str | None = None,
        n_workers: int | None = None,
        threads_per_worker: int | None = None,
        is_async: bool = False,
    ) -> None:
        super().__init__(is_async=is_async)
        self._scheduler = scheduler
        self._n_workers = n_workers
        self._threads_per_worker = threads_per_worker

    def _get_executor(self, max_workers: int) -> None:
        """Not used: :meth:`_run` submits to Dask itself."""
        return None

    def _validate_nodes(self, nodes) -> None:
        generators = [n.name for n in nodes if inspect.isgeneratorfunction(n.func)]
        if generators:
            raise ValueError(
                f"DaskRunner cannot stream the outputs of generator nodes {generators}"
                " from a worker; run them with SequentialRunner"
            )

    def _settings(self, catalog: CatalogProtocol) -> dict[str, Any]:
        """The cluster settings: runner arguments, then the environment variable,
        then the ``dask`` parameters."""
        params = catalog.load(PARAMETERS) if PARAMETERS in catalog else {}
        params = dict(params or {})
        return {
            "scheduler": self._scheduler
            or os.environ.get(SCHEDULER_ENV)
            or params.get("scheduler"),
            "n_workers": self._n_workers or params.get("n_workers") or os.cpu_count(),
            "threads_per_worker": self._threads_per_worker
            or params.get("threads_per_worker")
            or 1,
        }

    @contextmanager
    def _client(self, catalog: CatalogProtocol) -> Iterator[Client]:
        """A client of the configured scheduler, or of a local cluster started for
        this run (closed after it)."""
        from distributed import Client

        settings = self._settings(catalog)
        if settings["scheduler"]:
            client = Client(settings["scheduler"])
            self._logger.info("Dask: scheduler %s", settings["scheduler"])
            try:
                self._check_folders(client)
                yield client
            finally:
                client.close()
            return
        chatter = logging.getLogger("distributed")
        level = chatter.level
        # a cluster of this run's own: its connection chatter would drown the run log
        chatter.setLevel(logging.WARNING)
        try:
            with (
                local_cluster(
                    int(settings["n_workers"]), int(settings["threads_per_worker"])
                ) as cluster,
                Client(cluster) as client,
            ):
                self._logger.info(
                    "Dask: local cluster of %d worker processes × %d threads",
                    int(settings["n_workers"]),
                    int(settings["threads_per_worker"]),
                )
                yield client
        finally:
            chatter.setLevel(level)

    def _warn_if_threads_unset(
        self, pipeline: Pipeline, catalog: CatalogProtocol
    ) -> None:
        """Training on workers uses their torch thread count unless
        ``training.num_threads`` says otherwise; thread counts change the results."""
        if TRAINING not in pipeline.inputs():
            return
        if (catalog.load(TRAINING) or {}).get("num_threads") is None:
            self._logger.warning(
                "training.num_threads is null: Dask workers train with their own "
                "torch thread count (1 on a local cluster), a sequential run with "
                "torch's default (%d here), and thread counts change the trained "
                "models; set training.num_threads to compare runs "
                "(docs/scaling.md#same-numbers)",
                os.cpu_count() or 1,
            )

    def _check_folders(self, client: Client) -> None:
        """Warn when workers run in another folder than this process: parameters
        such as ``training.cache_dir`` and ``separation.separator.repo`` are paths
        relative to the project folder, which nodes resolve where they run."""
        here = os.getcwd()
        elsewhere = {
            address: folder
            for address, folder in client.run(os.getcwd).items()
            if folder != here
        }
        if elsewhere:
            address, folder = sorted(elsewhere.items())[0]
            self._logger.warning(
                "Dask: %d workers run in another folder than this process (%s: %s, "
                "here %s); relative paths in the parameters (caches, separator "
                "repo) resolve there: start workers in the project folder, on "
                "storage every machine sees (docs/scaling.md)",
                len(elsewhere),
                address,
                folder,
                here,
            )

    def _run(
        self,
        pipeline: Pipeline,
        catalog: CatalogProtocol,
        hook_manager: PluginManager | None = None,
        run_id: str | None = None,
    ) -> None:
        """Submit each node whose inputs exist; save outputs as nodes finish.

        Args:
            pipeline: The ``Pipeline`` to run.
            catalog: The catalog nodes load from and save to (in this process).
            hook_manager: The ``PluginManager`` whose hooks run in this process.
            run_id: The id of the run.
        """
        from distributed import wait

        nodes = pipeline.nodes  # topologically sorted: submission order follows it
        self._validate_nodes(nodes)
        order = {node: i for i, node in enumerate(nodes)}
        load_counts = Counter(chain.from_iterable(n.inputs for n in nodes))
        dependencies = pipeline.node_dependencies
        todo = set(dependencies)
        done: set[Node] = set()
        running: dict[Any, Node] = {}
        inputs_of: dict[Node, dict[str, Any]] = {}
        data = _Uploads(catalog, load_counts)
        self._warn_if_threads_unset(pipeline, catalog)
        with self._client(catalog) as client:
            client.forward_logging("emomucs", level=logging.INFO)
            data.client = client
            while True:
                ready = sorted(
                    (n for n in todo if dependencies[n] <= done), key=order.get
                )
                todo -= set(ready)
                for node in ready:
                    inputs = self._load_inputs(node, data, hook_manager, run_id)
                    inputs_of[node] = inputs
                    future = client.submit(
                        run_node_function,
                        node,
                        data.arguments(node, inputs),
                        key=f"node-{data.run}-{order[node]}-{node.name}",
                        pure=False,
                    )
                    running[future] = node
                if not running:
                    if todo:
                        self._raise_runtime_error(todo, done, set(ready), None)
                    break
                finished = wait(list(running), return_when="FIRST_COMPLETED").done
                for future in sorted(finished, key=lambda f: order[running[f]]):
                    node = running.pop(future)
                    inputs = inputs_of.pop(node)
                    try:
                        outputs = future.result()
                    except Exception as error:
                        hook_manager.hook.on_node_error(
                            error=error,
                            node=node,
                            catalog=catalog,
                            inputs=inputs,
                            is_async=False,
                            run_id=run_id,
                        )
                        client.cancel(list(running))
                        self._suggest_resume_scenario(pipeline, done, catalog)
                        raise
                    self._save_outputs(
                        node, catalog, inputs, outputs, hook_manager, run_id
                    )
                    done.add(node)
                    self._logger.info("Completed node: %s", node.name)
                    self._logger.info(
                        "Completed %d out of %d tasks", len(done), len(nodes)
                    )
                    self._release_datasets(node, catalog, load_counts, pipeline)

    @staticmethod
    def _load_inputs(
        node: Node,
        data: _Uploads,
        hook_manager: PluginManager,
        run_id: str | None,
    ) -> dict[str, Any]:
        """The node's inputs, with the dataset and ``before_node_run`` hooks, as
        Kedro's ``Task`` loads them."""
        inputs = {}
        for name in node.inputs:
            hook_manager.hook.before_dataset_loaded(dataset_name=name, node=node)
            inputs[name] = data.load(name)
            hook_manager.hook.after_dataset_loaded(
                dataset_name=name, data=inputs[name], node=node
            )
        changed = Task._collect_inputs_from_hook(
            node, data.catalog, inputs, False, hook_manager, run_id=run_id
        )
        data.replaced[node] = set(changed)
        inputs.update(changed)
        return inputs

    @staticmethod
    def _save_outputs(
        node: Node,
        catalog: CatalogProtocol,
        inputs: dict[str, Any],
        outputs: dict[str, Any],
        hook_manager: PluginManager,
        run_id: str | None,
    ) -> None:
        """``after_node_run``, then each output saved with its hooks, as Kedro's
        ``Task`` does."""
        hook_manager.hook.after_node_run(
            node=node,
            catalog=catalog,
            inputs=inputs,
            outputs=outputs,
            is_async=False,
            run_id=run_id,
        )
        for name, data in outputs.items():
            hook_manager.hook.before_dataset_saved(
                dataset_name=name, data=data, node=node
            )
            catalog.save(name, data)
            hook_manager.hook.after_dataset_saved(
                dataset_name=name, data=data, node=node
            )
        for name in node.confirms:
            catalog.confirm(name)


class _Uploads:
    """Datasets loaded here and sent to the cluster once each, however many nodes
    read them (the eight single-source models read one feature set).

    A dataset is loaded from the catalog once while nodes still need it and sent as
    one task (:func:`emomucs.fanout.upload`), so the scheduler and each worker hold
    one copy; both are dropped once the last node reading it has been submitted (the
    cluster keeps the data until those nodes have run).
    """

    def __init__(self, catalog: CatalogProtocol, load_counts: Counter) -> None:
        self.catalog = catalog
        self.client: Client | None = None
        self.run = uuid.uuid4().hex[:8]
        self.replaced: dict[Node, set[str]] = {}
        self._pending = Counter(load_counts)
        self._loaded: dict[str, Any] = {}
        self._futures: dict[str, Any] = {}

    def load(self, name: str) -> Any:
        if name not in self._loaded:
            self._loaded[name] = self.catalog.load(name)
        return self._loaded[name]

    def arguments(self, node: Node, inputs: dict[str, Any]) -> dict[str, Any]:
        """The node's inputs as the task takes them: futures of the uploaded
        datasets, and the values a ``before_node_run`` hook replaced."""
        from emomucs.fanout import upload

        arguments = {}
        replaced = self.replaced.pop(node, set())
        for name, value in inputs.items():
            if name in replaced:
                arguments[name] = value
            else:
                if name not in self._futures:
                    key = f"data-{self.run}-{name}"
                    self._futures[name] = upload(self.client, value, key)
                arguments[name] = self._futures[name]
            self._pending[name] -= 1
            if self._pending[name] < 1:
                self._loaded.pop(name, None)
                self._futures.pop(name, None)
        return arguments
