"""Choosing and loading a separator: a pretrained Demucs, a local Demucs repo, any
object named by an import path (a Demucs-like model or a plain function), or oracle.

A separator is named by parameters (:class:`SeparatorSpec`) and has an *identity*: a
string that changes whenever its weights change, used to key cached stems and recorded
in the stems' ``attrs["separator"]``.

Local repos hold pickled code (Demucs loads them with ``torch.load(weights_only=False)``):
only load repos you trust, such as the one ``separator_training`` writes.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

logger = logging.getLogger(__name__)

KINDS = ("local", "pretrained", "callable", "oracle")

DEMUCS_INTERFACE = ("samplerate", "audio_channels", "sources")
"""Attributes of a Demucs model (``demucs.apply.apply_model`` runs anything with
them that maps ``(batch, channels, samples)`` to ``(batch, sources, channels,
samples)``)."""

_HOW_TO_CHOOSE = (
    "Other options: the compact local separator (separation.separator.kind: local, "
    "trained offline by `kedro run --pipeline=separator_training`), or kind: oracle "
    "when the corpus has true stems."
)


class SeparatorUnavailableError(RuntimeError):
    """The separator named by the parameters cannot be loaded; the message says why."""


@dataclass(frozen=True)
class SeparatorSpec:
    """Which separator to use.

    Attributes:
        kind: ``local`` (a folder written by ``demucs.states.save_with_checksum``),
            ``pretrained`` (``demucs.pretrained.get_model`` names such as ``htdemucs``)
            or ``oracle`` (the corpus' true stems).
        name: Model or bag name (``emomucs_compact``, ``htdemucs``, ``mdx_extra``...).
        repo: The local repo folder, for ``local``.
        allow_download: Whether a pretrained model missing from the local caches may be
            downloaded. Off by default so an offline run fails at once instead of
            waiting on the network.
        target: ``package.module:attribute``, for ``callable``: a plain function
            ``(audio, sample_rate) -> {source: audio}``, or a model with Demucs'
            interface (:data:`DEMUCS_INTERFACE`), or a class that builds one
            (see :func:`load_callable`).
        options: Keyword arguments for ``target`` (a function gets them on every
            call, a class when it is built).
    """

    kind: str = "local"
    name: str | None = None
    repo: str | None = None
    allow_download: bool = False
    target: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"separator kind {self.kind!r} is not one of {KINDS}")
        if self.kind == "callable":
            if not self.target or ":" not in self.target:
                raise ValueError(
                    "a callable separator needs target: package.module:attribute, "
                    f"got {self.target!r}"
                )
        elif self.kind != "oracle" and not self.name:
            raise ValueError(f"a {self.kind} separator needs a name")
        if self.kind == "local" and not self.repo:
            raise ValueError("a local separator needs a repo folder")

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> SeparatorSpec:
        """Build from the ``separation.separator`` parameters."""
        known = {"kind", "name", "repo", "allow_download", "target", "options"}
        unknown = set(options) - known
        if unknown:
            raise ValueError(f"unknown separator options {sorted(unknown)}")
        return cls(**{**options, "options": dict(options.get("options") or {})})


@dataclass
class LoadedSeparator:
    """A Demucs model (or bag of models) ready for ``apply_model``, with its identity."""

    model: nn.Module
    identity: str

    @property
    def sample_rate(self) -> int:
        return int(self.model.samplerate)

    @property
    def audio_channels(self) -> int:
        return int(self.model.audio_channels)

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(self.model.sources)

    @property
    def stem_names(self) -> tuple[str, ...]:
        """The stems it gives: Demucs' sources are mapped to the four of
        :data:`emomucs.SOURCES` (:func:`~emomucs.separation.separate.source_matrix`)."""
        from emomucs import SOURCES

        return SOURCES


SeparateFunction = Callable[[np.ndarray, int], Mapping[str, np.ndarray]]


@dataclass
class CallableSeparator:
    """A plain function ``(audio, sample_rate) -> {source: audio}`` as a separator.

    ``audio`` is one clip, ``(channels, samples)`` float32 at ``sample_rate``; each
    returned stem is ``(samples,)`` or ``(channels, samples)`` at the same rate and
    length (they are down-mixed to mono and resampled after). The stems are named
    by the dict's keys, in its order, the same for every clip.

    Attributes:
        function: The function, its ``options`` bound.
        identity: ``callable:<target>:<digest>``; the digest covers the source file
            of the function's module and the options, so changing either gives new
            stems (and new cache keys).
        stem_names: The names of its stems, in order.
    """

    function: SeparateFunction
    identity: str
    stem_names: tuple[str, ...]

    def separate(self, clip: np.ndarray, sample_rate: int, where: str) -> np.ndarray:
        """``(sources, channels, samples)`` float32 stems of one clip."""
        result = self.function(np.asarray(clip, dtype=np.float32), int(sample_rate))
        if not isinstance(result, Mapping) or tuple(result) != self.stem_names:
            got = list(result) if isinstance(result, Mapping) else type(result)
            raise ValueError(
                f"{where}: the separator returned {got}, expected a dict of "
                f"{list(self.stem_names)}"
            )
        stems = []
        for name, given in result.items():
            stem = np.asarray(given, dtype=np.float32)
            stem = stem[None] if stem.ndim == 1 else stem
            if stem.ndim != 2 or stem.shape[-1] != clip.shape[-1]:
                raise ValueError(
                    f"{where}: stem {name!r} has shape {stem.shape}, expected "
                    f"(channels, {clip.shape[-1]}) like the clip"
                )
            stems.append(stem)
        channels = max(stem.shape[0] for stem in stems)
        return np.stack([np.broadcast_to(s, (channels, s.shape[-1])) for s in stems])


def load_separator(spec: SeparatorSpec) -> LoadedSeparator | CallableSeparator:
    """Load the separator a spec names (oracle needs no model and is refused here).

    Raises:
        SeparatorUnavailableError: The repo, model, weights or target are missing,
            with what to do about it.
    """
    if spec.kind == "local":
        return _load_local(Path(spec.repo), spec.name)
    if spec.kind == "pretrained":
        return _load_pretrained(spec.name, spec.allow_download)
    if spec.kind == "callable":
        return load_callable(spec.target, spec.options)
    raise ValueError("the oracle separator has no model to load")


# --- anything named by an import path ----------------------------------------------


def _resolve(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    try:
        value: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            value = getattr(value, part)
    except (ImportError, AttributeError) as error:
        raise SeparatorUnavailableError(
            f"separator target {target!r} cannot be imported ({error}); it must be "
            "package.module:attribute on the Python path"
        ) from error
    return value


def _code_digest(value: Any, options: Mapping[str, Any]) -> str:
    """sha256 of the source file defining ``value`` and of the options."""
    digest = hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode())
    try:
        digest.update(Path(inspect.getsourcefile(inspect.unwrap(value))).read_bytes())
    except (TypeError, OSError):  # a builtin or an object without a source file
        digest.update(repr(value).encode())
    return digest.hexdigest()[:16]


def _has_demucs_interface(value: Any) -> bool:
    return isinstance(value, nn.Module) and all(
        hasattr(value, name) for name in DEMUCS_INTERFACE
    )


def load_callable(
    target: str, options: Mapping[str, Any] | None = None
) -> LoadedSeparator | CallableSeparator:
    """The separator ``target`` names, by what it is.

    - a torch module with Demucs' interface (:data:`DEMUCS_INTERFACE`): applied
      like a Demucs model (``apply_model``, the apply options, stems mapped to the
      four sources);
    - a class: built with ``options``, then it must be such a module;
    - any other callable: a plain function ``(audio, sample_rate) -> {source:
      audio}`` (:class:`CallableSeparator`), called with ``options`` as keywords.
      Its stem names come from its ``sources`` attribute, or from one call on a
      second of silence.

    Raises:
        SeparatorUnavailableError: Not importable, or not one of the above.
    """
    options = dict(options or {})
    value = _resolve(target)
    digest = _code_digest(value, options)
    if isinstance(value, type):
        value = value(**options)
        if not _has_demucs_interface(value):
            raise SeparatorUnavailableError(
                f"separator target {target!r} is a class, but what it builds is not a "
                f"torch module with {list(DEMUCS_INTERFACE)}"
            )
    if _has_demucs_interface(value):
        state = hashlib.sha256()
        for key, tensor in value.state_dict().items():
            state.update(key.encode())
            state.update(tensor.detach().cpu().numpy().tobytes())
        identity = f"callable:{target}:{digest}{state.hexdigest()[:8]}"
        return LoadedSeparator(model=value.eval(), identity=identity)
    if not callable(value):
        raise SeparatorUnavailableError(
            f"separator target {target!r} is a {type(value).__name__}: expected a "
            "function (audio, sample_rate) -> {source: audio} or a Demucs-like model"
        )
    function = partial(value, **options) if options else value
    names = getattr(value, "sources", None)
    if names is None:
        rate = 8000
        names = tuple(function(np.zeros((1, rate), dtype=np.float32), rate))
    names = tuple(str(name) for name in names)
    if not names or len(set(names)) != len(names):
        raise SeparatorUnavailableError(
            f"separator target {target!r} names no or repeated stems: {list(names)}"
        )
    return CallableSeparator(function, f"callable:{target}:{digest}", names)


# --- local repos ---------------------------------------------------------------------


def _signature(file: Path) -> str:
    # demucs.repo.LocalRepo's naming: NAME-<checksum>.th or NAME.th
    return file.stem.rsplit("-", 1)[0] if "-" in file.stem else file.stem


def local_model_files(repo: Path, name: str) -> list[Path]:
    """The files ``get_model(name, repo=repo)`` reads, resolved as Demucs does.

    Raises:
        SeparatorUnavailableError: No such folder, model or bag member.
    """
    train_hint = (
        "train it with `kedro run --pipeline=separator_training`, or point "
        "separation.separator.repo at a folder written by demucs.states.save_with_checksum"
    )
    if not repo.is_dir():
        raise SeparatorUnavailableError(
            f"separator repo {repo} does not exist: {train_hint}. {_HOW_TO_CHOOSE}"
        )
    models = {_signature(file): file for file in sorted(repo.glob("*.th"))}
    if name in models:
        return [models[name]]
    bag_file = repo / f"{name}.yaml"
    if not bag_file.is_file():
        found = sorted(set(models) | {bag.stem for bag in repo.glob("*.yaml")})
        raise SeparatorUnavailableError(
            f"separator repo {repo} has no model or bag named {name!r} "
            f"(found {found or 'nothing'}): {train_hint}."
        )
    bag = yaml.safe_load(bag_file.read_text())
    missing = [sig for sig in bag.get("models", []) if sig not in models]
    if missing:
        raise SeparatorUnavailableError(
            f"bag {bag_file} names models {missing} that {repo} does not hold"
        )
    return [bag_file] + [models[sig] for sig in bag["models"]]


def _files_digest(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode())
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()[:16]


def _load_local(repo: Path, name: str) -> LoadedSeparator:
    from demucs.pretrained import get_model
    from demucs.repo import ModelLoadingError

    files = local_model_files(repo, name)
    identity = f"local:{name}:{_files_digest(files)}"
    try:
        model = get_model(name, repo=repo)
    except (ModelLoadingError, OSError, RuntimeError) as error:
        raise SeparatorUnavailableError(
            f"separator {name!r} in {repo} cannot be loaded: {error}"
        ) from error
    return LoadedSeparator(model=model, identity=identity)


# --- pretrained models -----------------------------------------------------------------


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}


def _remote_catalogue() -> tuple[Path, dict[str, str]]:
    from demucs.pretrained import REMOTE_ROOT, _parse_remote_files

    return REMOTE_ROOT, _parse_remote_files(REMOTE_ROOT / "files.txt")


def pretrained_signatures(name: str) -> list[str]:
    """The model signatures of a pretrained name, from the catalogue Demucs ships.

    Raises:
        SeparatorUnavailableError: Demucs knows no such name.
    """
    root, urls = _remote_catalogue()
    if name in urls:
        return [name]
    bag_file = root / f"{name}.yaml"
    if not bag_file.is_file():
        names = sorted(bag.stem for bag in root.glob("*.yaml"))
        raise SeparatorUnavailableError(
            f"{name!r} is not a pretrained Demucs model; known names: {names}"
        )
    return list(yaml.safe_load(bag_file.read_text())["models"])


def _torch_hub_file(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def _from_hf_cache(name: str) -> nn.Module | None:
    """The bag from the Hugging Face cache without any network access, or None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    from demucs.apply import BagOfModels
    from demucs.hf import DEFAULT_NAMESPACE, hf_repo_name, load_safetensors_model

    repo_id = f"{DEFAULT_NAMESPACE}/{hf_repo_name(name)}"
    bag_path = try_to_load_from_cache(repo_id, f"{name}.yaml")
    if not isinstance(bag_path, str):
        return None
    bag = yaml.safe_load(Path(bag_path).read_text())
    paths = [
        try_to_load_from_cache(repo_id, f"{sig}.safetensors") for sig in bag["models"]
    ]
    if not all(isinstance(path, str) for path in paths):
        return None
    models = [load_safetensors_model(path) for path in paths]
    return BagOfModels(models, bag.get("weights"), bag.get("segment"))


def _from_torch_hub_cache(name: str, signatures: list[str]) -> nn.Module | None:
    """The model from torch hub's checkpoint folder (Demucs' legacy download), or None."""
    from demucs.repo import AnyModelRepo, BagOnlyRepo, RemoteRepo

    root, urls = _remote_catalogue()
    if not all(
        sig in urls and _torch_hub_file(urls[sig]).is_file() for sig in signatures
    ):
        return None
    # torch.hub.load_state_dict_from_url reads an existing checkpoint without the network
    model_repo = RemoteRepo(urls)
    return AnyModelRepo(model_repo, BagOnlyRepo(root, model_repo)).get_model(name)


def _load_pretrained(name: str, allow_download: bool) -> LoadedSeparator:
    signatures = pretrained_signatures(name)
    identity = f"pretrained:{name}:{'+'.join(signatures)}"
    model = _from_hf_cache(name)
    if model is None:
        model = _from_torch_hub_cache(name, signatures)
    if model is not None:
        model.eval()
        return LoadedSeparator(model=model, identity=identity)

    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    fetch = (
        f'fetch the weights once with internet access: python -c "from '
        f"demucs.pretrained import get_model; get_model('{name}')\" (it fills "
        f"{checkpoints} or the Hugging Face cache; copy that folder to an offline machine)"
    )
    if not allow_download or _offline():
        reason = (
            "HF_HUB_OFFLINE is set"
            if _offline()
            else "separation.separator.allow_download is false"
        )
        raise SeparatorUnavailableError(
            f"pretrained Demucs model {name!r} is not in the local caches and {reason}, "
            f"so nothing was downloaded. To use it, {fetch}, or set allow_download: true "
            f"on a machine with internet access. {_HOW_TO_CHOOSE}"
        )
    from demucs.pretrained import get_model

    try:
        model = get_model(name)
    except (Exception, SystemExit) as error:  # demucs exits on some failures
        raise SeparatorUnavailableError(
            f"pretrained Demucs model {name!r} could not be downloaded ({error}). "
            f"To use it, {fetch}. {_HOW_TO_CHOOSE}"
        ) from error
    return LoadedSeparator(model=model, identity=identity)
