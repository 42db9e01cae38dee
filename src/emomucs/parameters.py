"""The declared schema of every parameter group, checked when a run starts.

A misspelt setting (``--params training.max_epoch=50``) used to do nothing: nodes
read the keys they know and drop the rest. :func:`validate_parameters` checks the
whole parameter tree against pydantic models (``extra="forbid"``) and fails with
the key, its group and the closest valid name::

    training.max_epoch is not a setting; did you mean training.max_epochs?

Groups whose settings are a dataclass' fields (``training``: TrainOptions and
CVOptions; ``separation.apply``: ApplyOptions; ``separator_training.training``:
TrainingOptions) take their schema from that dataclass, so an option added there is
valid here at once; ``networks`` take theirs from each network's constructor.
Experiment groups (``<group>.<name>.experiment``) may hold the variants of the
experiment grid (:mod:`emomucs.pipelines.experiments.variants`), each with
ExperimentSpec's fields; those that decide the variant's wiring (model, sources,
fusion, strategy) must be the grid's. Every field is optional: the check is
about names and types, the code keeps its own defaults and range checks.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import typing
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from emomucs.errors import SettingsError

FORBID = ConfigDict(extra="forbid")

RUNTIME_ONLY = frozenset({"dataset_root", "on_bad_track", "predict_variant"})
"""Top-level names that ``--params`` sets for ``${runtime_params:...}`` in conf:
Kedro merges them into the parameters too."""

OnBadTrack = Literal["skip", "fail"]


class _Group(BaseModel):
    model_config = FORBID


def _from_dataclass(name: str, *classes: type, exclude: tuple[str, ...] = ()) -> type:
    """A pydantic model with the fields of ``classes`` (all optional), typed by their
    annotations where pydantic can read them."""
    fields: dict[str, Any] = {}
    for cls in classes:
        try:
            hints = typing.get_type_hints(cls)
        except Exception:  # a forward reference pydantic cannot resolve: untyped
            hints = {}
        for field in dataclasses.fields(cls):
            if field.name in exclude:
                continue
            hint = hints.get(field.name, Any)
            if dataclasses.is_dataclass(hint):
                hint = _from_dataclass(f"{name}_{field.name}", hint)
            fields[field.name] = (hint | None, None)
    return create_model(name, __config__=FORBID, **fields)


def _from_signature(name: str, cls: type) -> type | None:
    """A pydantic model of ``cls.__init__``'s keyword arguments, untyped; None when
    it takes ``**kwargs`` (anything goes)."""
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    return create_model(
        name, __config__=FORBID, **{p.name: (Any, None) for p in parameters}
    )


class Clipping(_Group):
    clip_seconds: float | None = None
    seed: int | None = None
    sample_rate: int | None = None
    channels: int | None = None
    min_chorus_s: float | None = None
    silence_dbfs: float | None = None
    duration_tolerance_s: float | None = None
    on_bad_track: OnBadTrack | None = None
    min_surviving_fraction: float | None = None


class Contributions(_Group):
    shapley: bool | None = None
    tolerance: float | None = None


class Dask(_Group):
    """``emomucs.runners.DaskRunner``'s cluster (docs/scaling.md)."""

    scheduler: str | None = None
    n_workers: int | None = None
    threads_per_worker: int | None = None


class Ingestion(_Group):
    on_bad_track: OnBadTrack | None = None
    chorus_span_tolerance_s: float | None = None


class LogMel(_Group):
    n_mels: int | None = None
    n_fft: int | None = None
    hop_length: int | None = None
    top_db: float | None = None


class Chroma(_Group):
    n_chroma: int | None = None
    bins_per_octave: int | None = None
    n_octaves: int | None = None
    fmin_note: str | None = None
    hop_length: int | None = None


class ConstantQ(_Group):
    n_bins: int | None = None
    bins_per_octave: int | None = None
    fmin_note: str | None = None
    hop_length: int | None = None
    top_db: float | None = None


class Features(_Group):
    sample_rate: int | None = None
    length_tolerance_s: float | None = None
    log_mel: LogMel | None = None
    chroma: Chroma | None = None
    cqt: ConstantQ | None = None
    workers: int | Literal["auto"] | None = None


class Plots(_Group):
    point_size: float | None = None
    alpha: float | None = None
    fold_colormap: str | None = None
    colormap: str | None = None
    overview_columns: int | None = None


class Predict(_Group):
    """``kedro run --pipeline=predict``."""

    variant: str | None = None
    # one path as a plain string: what `--params predict.paths=DIR` gives
    paths: list[str] | str | None = None
    windows: bool | None = None
    hop_seconds: float | None = None
    checkpoint: str | None = None
    log_model: bool | None = None


class Reference(_Group):
    statistics: list[str] | None = None
    exclude_padding: bool | None = None
    alpha_log10_range: tuple[float, float] | None = None
    n_alphas: int | None = None
    stacking_folds: int | None = None
    tolerance: float | None = None


class Folds(_Group):
    outer_folds: int | None = None
    inner_folds: int | None = None
    seed: int | None = None
    min_train_tracks: int | None = None
    min_test_tracks: int | None = None


class Multitrack(_Group):
    n_tracks: int | None = None
    seed: int | None = None
    duration_s: float | None = None


class SyntheticCorpus(_Group):
    n_tracks: int | None = None
    seed: int | None = None
    first_music_id: int | None = None
    sample_rate: int | None = None
    stereo: bool | None = None
    chorus_range_s: tuple[float, float] | None = None
    short_below_s: float | None = None
    short_fraction: float | None = None
    label_noise_sd: float | None = None
    multitrack: Multitrack | None = None


class Separator(_Group):
    kind: Literal["local", "pretrained", "callable", "oracle"] | None = None
    name: str | None = None
    repo: str | None = None
    allow_download: bool | None = None
    target: str | None = None
    options: dict[str, Any] | None = None


class OtherSeparator(_Group):
    """A separator namespace beside ``separation`` (e.g. ``hpss``)."""

    separator: Separator | None = None


def _groups() -> dict[str, type]:
    """Group name -> its model; imports the option dataclasses lazily."""
    from emomucs.separation.separate import ApplyOptions
    from emomucs.separation.training import TrainingOptions
    from emomucs.training.loop import TrainOptions
    from emomucs.training.nested_cv import CVOptions

    apply = _from_dataclass("Apply", ApplyOptions)
    separation = create_model(
        "Separation",
        __config__=FORBID,
        separator=(Separator | None, None),
        apply=(apply | None, None),
        output_sample_rate=(int | None, None),
        cache_dir=(str | None, None),
        seed=(int | None, None),
        progress=(bool | None, None),
        corpus_root=(str | None, None),
        num_threads=(int | None, None),
        workers=(int | Literal["auto"] | None, None),
    )
    separator_training = create_model(
        "SeparatorTraining",
        __config__=FORBID,
        seed=(int | None, None),
        valid_fraction=(float | None, None),
        progress=(bool | None, None),
        training=(
            _from_dataclass("SeparatorTrainingOptions", TrainingOptions) | None,
            None,
        ),
        evaluation=(apply | None, None),
    )
    from emomucs.pipelines.separation.pipeline import OTHER_SEPARATORS

    return {
        **dict.fromkeys(OTHER_SEPARATORS, OtherSeparator),
        "clipping": Clipping,
        "contributions": Contributions,
        "cv": Folds,
        "dask": Dask,
        "features": Features,
        "ingestion": Ingestion,
        "plots": Plots,
        "predict": Predict,
        "reference": Reference,
        "separation": separation,
        "separator_training": separator_training,
        "synthetic_corpus": SyntheticCorpus,
        "training": _from_dataclass(
            "Training", TrainOptions, CVOptions, exclude=("train",)
        ),
    }


def _experiment_model() -> type:
    from emomucs.training.spec import DERIVED, READS, ExperimentSpec

    networks = Literal[tuple(READS)]  # type: ignore[valid-type]
    per_source = create_model(
        "PerSource",
        __config__=FORBID,
        source_model=(networks | None, None),
        model_kwargs=(dict[str, Any] | None, None),
    )
    representations = sorted({r for reads in READS.values() for r in reads})
    base = _from_dataclass("ExperimentFields", ExperimentSpec, exclude=DERIVED)
    return create_model(
        "Experiment",
        __base__=base,
        per_source=(dict[str, per_source] | None, None),
        representation=(Literal[tuple(representations)] | None, None),  # type: ignore[valid-type]
    )


def _check_network_kwargs(experiment: Mapping[str, Any], where: str) -> None:
    """The variant's own network arguments (``model_kwargs``, and each
    ``per_source`` entry's) against their network's constructor."""
    from emomucs.models import MODEL_REGISTRY

    default = experiment.get("source_model") or experiment.get("model")
    checks = [(default, experiment.get("model_kwargs"), f"{where}.model_kwargs")]
    for source, given in (experiment.get("per_source") or {}).items():
        entry = given or {}
        checks.append(
            (
                entry.get("source_model") or default,
                entry.get("model_kwargs"),
                f"{where}.per_source.{source}.model_kwargs",
            )
        )
    for network, kwargs, at in checks:
        if network not in MODEL_REGISTRY or network == "EmoMucs" or not kwargs:
            continue
        model = _from_signature(f"Network{network}", MODEL_REGISTRY[network])
        if model is not None:
            _check(model, kwargs, at)


def _variants() -> dict[str, dict[str, Any]]:
    """Experiment group -> its variants by name, from the experiment grid."""
    from emomucs.pipelines.experiments.variants import all_variants

    groups: dict[str, dict[str, Any]] = {}
    for variant in all_variants():
        group, name = variant.namespace.split(".", 1)
        groups.setdefault(group, {})[name] = variant
    return groups


def _fail(where: str, key: str, valid: list[str]) -> SettingsError:
    prefix = f"{where}." if where else ""
    name = f"{prefix}{key}"
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    hint = (
        f"; did you mean {prefix}{close[0]}?"
        if close
        else f"; valid names: {', '.join(sorted(valid))}"
    )
    what = "a setting" if where else "a parameter group"
    return SettingsError(f"{name} is not {what}{hint}")


def _model_in(annotation: Any) -> type[BaseModel]:
    """The pydantic model inside an annotation (``M | None``, ``dict[str, M]``)."""
    if isinstance(annotation, type) and not typing.get_args(annotation):
        if issubclass(annotation, BaseModel):
            return annotation
    for argument in typing.get_args(annotation):
        try:
            return _model_in(argument)
        except LookupError:
            continue
    raise LookupError(f"no settings model in {annotation!r}")


def _check(model: type[BaseModel], values: Any, where: str) -> None:
    """Validate ``values`` against ``model``; raise a SettingsError naming the first
    unknown key (with its closest valid name) or wrong value."""
    if not isinstance(values, Mapping):
        raise SettingsError(f"{where} must be a mapping of settings, got {values!r}")
    try:
        model.model_validate(dict(values))
    except ValidationError as error:
        problem = error.errors()[0]
        location = [str(part) for part in problem["loc"]]
        path = ".".join([where, *location[:-1]])
        if problem["type"] == "extra_forbidden":
            nested: Any = model
            for part in location[:-1]:
                if part in nested.model_fields:  # else a key of a dict of models
                    nested = _model_in(nested.model_fields[part].annotation)
            raise _fail(path, location[-1], list(nested.model_fields)) from None
        raise SettingsError(
            f"{'.'.join([where, *location])}: {problem['msg']} "
            f"(got {problem.get('input')!r})"
        ) from None


def _check_networks(networks: Any) -> None:
    from emomucs.models import MODEL_REGISTRY

    if not isinstance(networks, Mapping):
        raise SettingsError(f"networks must be a mapping, got {networks!r}")
    for name, kwargs in networks.items():
        if name not in MODEL_REGISTRY:
            raise _fail("networks", name, list(MODEL_REGISTRY))
        model = _from_signature(f"Network{name}", MODEL_REGISTRY[name])
        if model is not None:
            _check(model, kwargs or {}, f"networks.{name}")


def _check_experiments(
    group: str, values: Any, variants: Mapping[str, Any], experiment: type[BaseModel]
) -> None:
    if not isinstance(values, Mapping):
        raise SettingsError(f"{group} must be a mapping of variants, got {values!r}")
    for name, entry in values.items():
        if name not in variants:
            raise _fail(group, name, sorted(variants))
        if not isinstance(entry, Mapping):
            raise SettingsError(f"{group}.{name} must hold an experiment mapping")
        unknown = [key for key in entry if key != "experiment"]
        if unknown:
            raise _fail(f"{group}.{name}", unknown[0], ["experiment"])
        settings = entry.get("experiment") or {}
        where = f"{group}.{name}.experiment"
        _check(experiment, settings, where)
        _check_wiring(where, settings, variants[name])
        # the arguments against the networks they go to, the grid's merged in
        _check_network_kwargs({**variants[name].experiment, **settings}, where)


def _check_wiring(where: str, settings: Mapping[str, Any], variant: Any) -> None:
    """The settings that decide a variant's wiring are the grid's: a pipeline built
    for one strategy or set of sources cannot train another."""
    from emomucs.pipelines.experiments.variants import WIRED
    from emomucs.training.spec import ExperimentSpec

    fields = ExperimentSpec.__dataclass_fields__
    declared = {
        **{
            key: fields[key].default
            for key in ("source_model", "fusion", "strategy", "representation")
        },
        **variant.experiment,
    }
    for key in WIRED:
        if key not in settings:  # the grid's value is merged in by the config loader
            continue
        value = settings[key]
        if isinstance(value, (list, tuple)):
            value = list(value)
        if value != declared[key]:
            raise SettingsError(
                f"{where}.{key} is {value!r}, but the experiment grid "
                f"(emomucs/pipelines/experiments/variants.py) declares this variant "
                f"with {declared[key]!r}; declare a variant there instead"
            )


def validate_parameters(parameters: Mapping[str, Any]) -> None:
    """Check every parameter group against its declared schema.

    Raises:
        SettingsError: An unknown group or key (naming the closest valid one) or a
            value of the wrong type.
    """
    groups, grid, experiment = _groups(), _variants(), _experiment_model()
    for group, values in parameters.items():
        if group in groups:
            _check(groups[group], values, group)
        elif group == "networks":
            _check_networks(values)
        elif group in RUNTIME_ONLY:
            continue
        elif group in grid:
            _check_experiments(group, values, grid[group], experiment)
        else:
            raise _fail("", group, [*groups, *grid, "networks", *RUNTIME_ONLY])
