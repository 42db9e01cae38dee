"""Nested cross-validation of one experiment variant, as in the original code.

For each outer fold, one model is trained per inner split (early-stopped on that
split's validation fold); the one with the lowest validation loss predicts the
outer fold's test tracks. Every variant reads the same fold table, so the
out-of-fold predictions of two variants are paired track by track.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from emomucs.fanout import map_in_order
from emomucs.heap import MAX_MMAP_THRESHOLD_MB, fix_mmap_threshold
from emomucs.models import from_checkpoint, to_checkpoint
from emomucs.progress import quiet_progress
from emomucs.training.cache import SplitCache, environment, hash_values, slug
from emomucs.training.data import (
    FeatureSet,
    Standardiser,
    describe_inputs,
    input_kwargs,
    select_inputs,
    select_labels,
    validate_features,
)
from emomucs.training.folds import Split, fingerprint_folds, iter_splits
from emomucs.training.loop import TrainOptions, predict, resolve_device, train_model
from emomucs.training.metrics import DIMENSIONS, attention_column
from emomucs.training.spec import ExperimentSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CVOptions:
    """Nested-CV settings beyond the optimiser's.

    Attributes:
        train: Optimiser and early-stopping settings.
        seed: Seeds weight initialisation and batch order of every split.
        repeats: How many times every split is trained, each time with its own
            seeds (repeat 0 uses the seeds a single run always used), so results
            come with a spread over seeds on the same folds.
        standardise: Scale inputs per source and channel with statistics of the
            split's training part (the original does not).
        cache_dir: Where finished splits are kept so a killed run resumes; None
            turns the cache off.
        num_threads: torch CPU threads; None leaves torch's default.
        workers: Splits trained side by side in local worker processes, each
            with ``num_threads`` threads: ``auto`` (one per usable core) or a
            count; 1 trains them one after another here. The results do not
            depend on it.
        heap_mmap_threshold_mb: Every process that trains a split returns freed
            blocks of this size or more to the system
            (:func:`emomucs.heap.fix_mmap_threshold`); None keeps glibc's adaptive
            default. The results do not depend on it.
    """

    train: TrainOptions
    seed: int = 0
    repeats: int = 1
    standardise: bool = False
    cache_dir: str | None = None
    num_threads: int | None = None
    workers: int | Literal["auto"] | None = 1
    heap_mmap_threshold_mb: float | None = None

    def __post_init__(self) -> None:
        if int(self.repeats) < 1:
            raise ValueError(f"training.repeats must be at least 1, got {self.repeats}")
        threshold = self.heap_mmap_threshold_mb
        if threshold is not None and not 0 < threshold <= MAX_MMAP_THRESHOLD_MB:
            raise ValueError(
                "training.heap_mmap_threshold_mb must be above 0 and at most "
                f"{MAX_MMAP_THRESHOLD_MB}, or null; got {threshold}"
            )

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> CVOptions:
        """Build from the ``training`` parameters."""
        names = {f.name for f in fields(cls)} - {"train"}
        return cls(
            train=TrainOptions.from_params(params),
            **{k: v for k, v in params.items() if k in names},
        )


@dataclass
class CVResult:
    """What one variant's nested CV produced.

    Attributes:
        models: ``{"experiment", "label", "folds", "inputs", "repeats",
            "selected", "val_loss", "models"}`` (``inputs``: see
            :func:`~emomucs.training.data.describe_inputs`);
            ``models[repeat][outer][inner]`` is a checkpoint
            (:func:`emomucs.models.to_checkpoint` plus ``standardiser``) and
            ``selected[repeat][outer]`` the inner split tested on the outer fold.
            Read it through :func:`selected_models` and :func:`split_checkpoints`.
        predictions: Out-of-fold predictions, one row per repeat and track
            (column ``repeat``); attention fusion adds each track's weights
            (:func:`~emomucs.training.metrics.attention_column`).
        log: Losses per epoch of every split and repeat.
    """

    models: dict[str, Any]
    predictions: pd.DataFrame
    log: pd.DataFrame


@dataclass(frozen=True)
class SelectedModel:
    """One outer fold's tested model, as :func:`selected_models` lists them.

    Attributes:
        repeat: Training repeat (seed) index; 0 when a variant has one.
        outer: Outer fold whose test tracks this model predicted.
        inner: The inner split it was trained on.
        checkpoint: :func:`emomucs.models.to_checkpoint` plus ``standardiser``.
    """

    repeat: int
    outer: int
    inner: int
    checkpoint: dict[str, Any]


def _by_repeat(cv_models: dict[str, Any], key: str) -> dict[int, Any]:
    """``cv_models[key]`` keyed by repeat; artifacts written before repeats existed
    (no ``"repeats"`` entry) hold one repeat, 0."""
    if "repeats" not in cv_models:
        return {0: cv_models[key]}
    return cv_models[key]


def selected_models(cv_models: dict[str, Any]) -> list[SelectedModel]:
    """The model each outer fold was tested with, for every repeat, ordered by
    (repeat, outer fold).

    With :func:`split_checkpoints`, the one place that reads the layout of
    ``cv_models``: code that scores or explains stored models goes through it.
    """
    models = _by_repeat(cv_models, "models")
    return [
        SelectedModel(int(r), int(outer), int(inner), models[r][outer][inner])
        for r, chosen in sorted(_by_repeat(cv_models, "selected").items())
        for outer, inner in sorted(chosen.items())
    ]


def split_checkpoints(cv_models: dict[str, Any]) -> dict[tuple[int, int, int], Any]:
    """Every trained split's checkpoint, keyed by (repeat, outer fold, inner split)."""
    return {
        (int(r), int(k), int(j)): checkpoint
        for r, by_outer in _by_repeat(cv_models, "models").items()
        for k, by_inner in by_outer.items()
        for j, checkpoint in by_inner.items()
    }


def split_seed(seed: int, outer: int, inner: int, repeat: int = 0) -> int:
    """An independent seed per split and repeat, the same for every variant.

    Repeat 0 gives the seed a split had before repeats existed, so its results
    (and cached splits) stay comparable.
    """
    entropy = [seed, outer, inner] + ([repeat] if repeat else [])
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def _check_inputs(
    spec: ExperimentSpec,
    features: FeatureSet,
    pretrained: dict[str, dict[str, Any]],
    folds_id: str,
) -> None:
    """Raise ``ValueError`` when features or pretrained models do not fit ``spec``."""
    name = spec.label
    validate_features(features, name)
    wanted = spec.input_representation
    if features["representation"] != wanted:
        raise ValueError(
            f"{name}: reads {wanted} features, got {features['representation']}"
        )
    if not spec.pretrained:
        return
    missing = [s for s in spec.sources if s not in pretrained]
    if missing:
        raise ValueError(
            f"{name}: strategy {spec.strategy!r} needs single-source models of "
            f"{list(spec.sources)}; missing {missing}"
        )
    for source in spec.sources:
        experiment = pretrained[source]["experiment"]
        network, kwargs = spec.network_of(source), spec.kwargs_of(source, {})
        if (
            experiment["model"] != network
            or experiment["sources"] != [source]
            or kwargs
            != {
                **experiment["network_kwargs"],
                **experiment["model_kwargs"],
            }
        ):
            raise ValueError(
                f"{name}: the pretrained models given for {source!r} are "
                f"{pretrained[source]['label']}, not {network} ({source}) "
                f"with arguments {kwargs}"
            )
        if pretrained[source]["folds"] != folds_id:
            raise ValueError(
                f"{name}: the {source!r} models were trained on other folds "
                f"({pretrained[source]['folds']}, here {folds_id}); rerun them"
            )


@dataclass
class _Data:
    """A variant's inputs and labels for every track, and row lookup by id."""

    spec: ExperimentSpec
    inputs: torch.Tensor
    labels: torch.Tensor
    row_of: dict[int, int]

    def take(
        self, ids: np.ndarray, standardiser: Standardiser | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Model-ready inputs and labels of ``ids``.

        A single-source model reads ``(batch, ...)``, EmoMucs ``(batch, sources,
        ...)``.
        """
        rows = torch.as_tensor([self.row_of[int(i)] for i in ids], dtype=torch.long)
        x = self.inputs[rows]
        if standardiser is not None:
            x = standardiser(x)
        return (x if self.spec.model == "EmoMucs" else x[:, 0]), self.labels[rows]


@dataclass(frozen=True)
class SplitJob:
    """One model to train: an inner split of an outer fold, in one repeat.

    Attributes:
        repeat: Repeat index (its seeds: :func:`split_seed`).
        split: The tracks it trains, validates and is tested on.
        starts: For finetune/freeze, source -> the single-source checkpoint of the
            same repeat, outer fold and inner split; empty otherwise.
        key: Cache key: everything that changes the result.
        where: Names the job in logs and errors.
    """

    repeat: int
    split: Split
    starts: dict[str, dict[str, Any]]
    key: str
    where: str


def _standardiser(data: _Data, split: Split, options: CVOptions) -> Standardiser:
    """Fitted on the split's training part, or the identity."""
    if options.standardise:
        train_rows = [data.row_of[int(i)] for i in split.train]
        return Standardiser.fit(data.inputs[train_rows])
    return Standardiser.identity(data.inputs)


def _train_split(
    data: _Data,
    job: SplitJob,
    shape: dict[str, int],
    options: CVOptions,
) -> dict[str, Any]:
    """Train one inner split of one repeat; return its cache entry (checkpoint and
    losses)."""
    spec, split, where = data.spec, job.split, job.where
    standardiser = _standardiser(data, split, options)
    seed = split_seed(options.seed, split.outer, split.inner, job.repeat)
    torch.manual_seed(seed)
    model = spec.build(shape)
    if job.starts:
        model.load_source_states(job.starts)
    train = data.take(split.train, standardiser)
    validation = data.take(split.validation, standardiser)
    generator = torch.Generator().manual_seed(seed)
    if spec.strategy == "freeze":
        model.freeze_sources()
        result = _train_head_on_frozen_sources(
            model, train, validation, options.train, generator, where
        )
    else:
        result = train_model(
            model, train, validation, options.train, generator=generator, label=where
        )
    return {
        "checkpoint": {**to_checkpoint(model), "standardiser": standardiser.state()},
        "best_epoch": result.best_epoch,
        "best_loss": result.best_loss,
        "history": result.history,
    }


def _train_head_on_frozen_sources(
    model: torch.nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    validation: tuple[torch.Tensor, torch.Tensor],
    options: TrainOptions,
    generator: torch.Generator,
    label: str,
):
    """Train only the fusion head, on the frozen source networks' outputs.

    Frozen sources run in eval mode (no dropout, batch-norm on running statistics),
    so their part of the forward pass is the same every epoch: computing it once
    gives what training the whole model computes, batch order included, in a
    fraction of the time.
    """
    model.to(resolve_device(options.device))

    def fused(x: torch.Tensor) -> torch.Tensor:
        return predict(model, x, options.eval_batch_size, forward=model.fuse)

    return train_model(
        model.head,
        (fused(train[0]), train[1]),
        (fused(validation[0]), validation[1]),
        options,
        generator=generator,
        label=label,
    )


def _test_selected(
    data: _Data, test: np.ndarray, checkpoint: dict, options: CVOptions
) -> pd.DataFrame:
    """Out-of-fold predictions of one outer fold by its selected model."""
    model = from_checkpoint(checkpoint).to(resolve_device(options.train.device))
    standardiser = Standardiser.from_state(checkpoint["standardiser"])
    x_test, y_test = data.take(test, standardiser)
    guess = predict(model, x_test, options.train.eval_batch_size).numpy()
    part = pd.DataFrame({"musicId": test})
    for d, dim in enumerate(DIMENSIONS):
        part[dim] = y_test[:, d].numpy()
        part[f"{dim}_pred"] = guess[:, d]
    if getattr(model, "fusion", None) == "attention":
        weights = predict(
            model, x_test, options.train.eval_batch_size, model.attention_weights
        ).numpy()
        for d, dim in enumerate(DIMENSIONS):
            for s, source in enumerate(model.sources):
                part[attention_column(dim, source)] = weights[:, d, s]
    return part


def run_nested_cv(
    spec: ExperimentSpec,
    features: FeatureSet,
    track_table: pd.DataFrame,
    folds: pd.DataFrame,
    options: CVOptions,
    pretrained: dict[str, dict[str, Any]] | None = None,
) -> CVResult:
    """Nested CV of one variant.

    Args:
        spec: The variant.
        features: Features holding ``spec.sources`` for every track in ``folds``.
        track_table: ``musicId``, ``valence``, ``arousal``.
        folds: The shared fold table (see :mod:`emomucs.training.folds`).
        options: Training and CV settings.
        pretrained: For finetune/freeze: source -> that source's single-source
            :attr:`CVResult.models`, trained on the same folds.

    Raises:
        ValueError: Features, folds or pretrained models that do not fit the spec.
        NonFiniteLossError: A loss became NaN; the message names the variant,
            outer fold and inner split.
    """
    name = spec.label
    if options.num_threads:
        torch.set_num_threads(int(options.num_threads))
    folds_id = fingerprint_folds(folds)
    pretrained = pretrained or {}
    _check_inputs(spec, features, pretrained, folds_id)
    shape = input_kwargs(features)
    music_ids = np.sort(folds["musicId"].unique())
    data = _Data(
        spec,
        select_inputs(features, spec.sources, music_ids, name),
        select_labels(track_table, music_ids),
        {int(i): r for r, i in enumerate(music_ids)},
    )
    # Everything that changes a split's result, except the split and its start.
    settings = {**options.train.__dict__, **options.__dict__}
    # repeats: each repeat is its own set of jobs (with its own key)
    for key in (
        "train",
        "progress",
        "cache_dir",
        "num_threads",
        "device",
        "repeats",
        "workers",
        "heap_mmap_threshold_mb",
    ):
        settings.pop(key)
    with torch.random.fork_rng():  # building draws weights; keep the seeds' stream
        built = to_checkpoint(spec.build(shape))
    device = resolve_device(options.train.device)
    parts = {
        "experiment": spec.to_dict(),
        "settings": settings,
        "inputs": shape,
        "data": hash_values(data.inputs, data.labels),
        **environment({"model": built["model"], "kwargs": built["kwargs"]}, device),
    }
    data_key = hash_values(parts)
    cache = SplitCache(options.cache_dir, name, parts)

    repeats = int(options.repeats)
    starts_of = {s: split_checkpoints(pretrained[s]) for s in pretrained}
    jobs = []
    for repeat in range(repeats):
        for split in iter_splits(folds):
            k, j = split.outer, split.inner
            where = f"{name}, outer fold {k}, inner split {j}, repeat {repeat}"
            starts = {}
            if spec.pretrained:
                absent = [s for s in spec.sources if (repeat, k, j) not in starts_of[s]]
                if absent:
                    raise ValueError(
                        f"{where}: no single-source model of {absent} "
                        f"(finetune/freeze need as many repeats as they run)"
                    )
                starts = {s: starts_of[s][repeat, k, j] for s in spec.sources}
            key = hash_values(
                data_key,
                split.train,
                split.validation,
                *[starts[s]["state"] for s in sorted(starts)],
                # repeat 0 keeps the key a run without repeats had
                *([{"repeat": repeat}] if repeat else []),
            )
            jobs.append(SplitJob(repeat, split, starts, key, where))

    entries: dict[tuple[int, int, int], dict[str, Any]] = {}
    todo = []
    for job in jobs:
        entry = cache.load(job.repeat, job.split.outer, job.split.inner, job.key)
        if entry is None:
            todo.append(job)
        else:
            log.info("%s: reused from the cache", job.where)
            entries[job.repeat, job.split.outer, job.split.inner] = entry
    # one task per split on a Dask cluster when one is reachable, else on the local
    # workers or in this loop; results come back in the jobs' order either way
    bar = tqdm(
        total=len(todo),
        unit="split",
        desc=name,
        disable=not options.train.progress or quiet_progress() or not todo,
    )
    with bar:
        trained = map_in_order(
            train_and_cache_split,
            todo,
            shared={"data": data, "shape": shape, "options": options, "cache": cache},
            label=f"train-{slug(name)}",
            on_done=lambda job, entry: _log_trained(job, entry, bar),
            # one GPU: its splits take turns
            workers=1 if device.type == "cuda" else options.workers,
        )
    for job, entry in zip(todo, trained, strict=True):
        entries[job.repeat, job.split.outer, job.split.inner] = entry
    return _collect(data, jobs, entries, options, features, folds_id)


def _log_trained(job: SplitJob, entry: dict[str, Any], bar: tqdm) -> None:
    bar.update()
    log.info(
        "%s: trained, best epoch %d (validation loss %.4g)",
        job.where,
        entry["best_epoch"],
        entry["best_loss"],
    )


def train_and_cache_split(
    job: SplitJob,
    data: _Data,
    shape: dict[str, int],
    options: CVOptions,
    cache: SplitCache,
) -> dict[str, Any]:
    """Train one split and cache it; one fan-out task of :func:`run_nested_cv`.

    Self-contained, so a Dask worker (or a second worker, after the first died) gives
    what the sequential loop gives: the split seeds itself (:func:`split_seed`), sets
    the run's torch threads, and reuses an entry another attempt already wrote.
    """
    if options.num_threads:
        torch.set_num_threads(int(options.num_threads))
    if options.heap_mmap_threshold_mb is not None:
        fix_mmap_threshold(options.heap_mmap_threshold_mb)
    where = (job.repeat, job.split.outer, job.split.inner)
    entry = cache.load(*where, job.key)
    if entry is None:
        entry = _train_split(data, job, shape, options)
        cache.save(*where, job.key, entry)
    return entry


def _collect(
    data: _Data,
    jobs: list[SplitJob],
    entries: dict[tuple[int, int, int], dict[str, Any]],
    options: CVOptions,
    features: FeatureSet,
    folds_id: str,
) -> CVResult:
    """Select each (repeat, outer fold)'s model, test it, and lay out the results."""
    spec = data.spec
    models: dict[int, dict[int, dict[int, Any]]] = {}
    val_loss: dict[int, dict[int, dict[int, float]]] = {}
    tests: dict[int, np.ndarray] = {}
    history = []
    for job in jobs:
        r, k, j = job.repeat, job.split.outer, job.split.inner
        entry = entries[r, k, j]
        models.setdefault(r, {}).setdefault(k, {})[j] = entry["checkpoint"]
        val_loss.setdefault(r, {}).setdefault(k, {})[j] = float(entry["best_loss"])
        tests[k] = job.split.test
        history += [
            {
                **row,
                "repeat": r,
                "outer_fold": k,
                "inner_split": j,
                "best_epoch": entry["best_epoch"],
            }
            for row in entry["history"]
        ]

    selected = {
        r: {k: min(losses, key=losses.get) for k, losses in by_outer.items()}
        for r, by_outer in val_loss.items()
    }
    predictions = pd.concat(
        [
            _test_selected(data, tests[k], models[r][k][j], options).assign(
                repeat=r, outer_fold=k, inner_split=j
            )
            for r, chosen in selected.items()
            for k, j in chosen.items()
        ],
        ignore_index=True,
    )
    order = ["musicId", "repeat", "outer_fold", "inner_split"]
    predictions = predictions[order + [c for c in predictions if c not in order]]
    log_table = pd.DataFrame(history)
    log_table["selected"] = [
        selected[r][k] == j
        for r, k, j in zip(
            log_table["repeat"], log_table["outer_fold"], log_table["inner_split"]
        )
    ]
    columns = ["repeat", "outer_fold", "inner_split", "epoch", "train_loss", "val_loss"]
    log_table = log_table[[*columns, "best_epoch", "selected"]]
    artifact = {
        "experiment": spec.to_dict(),
        "label": spec.label,
        "folds": folds_id,
        "inputs": describe_inputs(features),
        "repeats": len(models),
        "selected": selected,
        "val_loss": val_loss,
        "models": models,
    }
    return CVResult(artifact, predictions, log_table)
