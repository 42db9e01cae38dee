"""Predict valence and arousal of new audio with a trained variant.

A :class:`Predictor` holds what one prediction needs, loaded once for a batch: the
variant's selected model of every outer fold and repeat (an ensemble, see
:func:`emomucs.training.selected_models`), each with its stored standardiser, the
separator the variant was trained on and the feature settings it was trained with.
Every file goes through the training stages' own functions: the clipping stage's
conversion to the clip format, :func:`~emomucs.separation.separate_tracks`, and the
features stage's :func:`~emomucs.pipelines.features.nodes.compute_log_mel` /
:func:`~emomucs.pipelines.features.nodes.collect_waveforms`.

The Kedro nodes, the ``emomucs predict`` command and the MLflow model
(:mod:`emomucs.serving`) all call :meth:`Predictor.predict_files`, so they give the
same numbers.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf
import torch

from emomucs.audio import AudioError, AudioSet, fix_length, load_audio
from emomucs.interpret import silence_features
from emomucs.models import EmoMucs, from_checkpoint
from emomucs.pipelines.clipping.nodes import _conform
from emomucs.pipelines.features.nodes import (
    SPECTRAL,
    collect_waveforms,
    compute_chroma,
    compute_constant_q,
    compute_log_mel,
)
from emomucs.progress import progress as bar
from emomucs.separation import (
    ApplyOptions,
    LoadedSeparator,
    SeparatorSpec,
    StemsCache,
    load_separator,
    separate_tracks,
)
from emomucs.training import Standardiser, predict, selected_models
from emomucs.training.data import select_inputs
from emomucs.training.metrics import DIMENSIONS

logger = logging.getLogger(__name__)

EXTENSIONS = (".mp3", ".wav", ".flac", ".ogg")
"""Audio files a folder is searched for."""

MEAN_WINDOW = "mean"
"""``window`` of the row that averages a file's windows."""


FEATURE_FUNCTIONS = {
    "log_mel": compute_log_mel,
    "chroma": compute_chroma,
    "cqt": compute_constant_q,
    "waveform": collect_waveforms,
}
"""Representation -> the features stage's function computing it."""


class PredictError(RuntimeError):
    """The model, separator or settings cannot predict; the message says why."""


def find_audio_files(paths: Sequence[str | Path]) -> pd.DataFrame:
    """Files and folders (searched recursively for mp3, wav, flac, ogg), as a table
    with one ``path`` column, in the order given and sorted inside a folder.

    A path that does not exist stays in the table: predicting it gives its error row.
    """
    found: list[str] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            found += sorted(
                str(p)
                for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in EXTENSIONS
            )
        else:
            found.append(str(path))
    return pd.DataFrame({"path": found})


def decode_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """``(channels, samples)`` float32 and the rate; ogg through soundfile directly.

    Raises:
        AudioError: The file is missing, empty or cannot be decoded.
    """
    path = Path(path)
    if path.suffix.lower() != ".ogg":
        return load_audio(path)
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
    except Exception as error:
        raise AudioError(f"{path.name}: cannot decode audio ({error})") from error
    if data.shape[0] == 0:
        raise AudioError(f"{path.name}: decoded to 0 samples")
    return np.ascontiguousarray(data.T), int(rate)


def window_starts(samples: int, window: int, hop: int) -> list[int]:
    """Starts of ``window``-sample windows ``hop`` apart covering ``samples``; the
    last window ends at the end (one window, zero-padded, when the file is shorter)."""
    if samples <= window:
        return [0]
    starts = list(range(0, samples - window + 1, hop))
    if starts[-1] + window < samples:
        starts.append(samples - window)
    return starts


def contribution_column(dimension: str, source: str) -> str:
    """The column of a source's contribution to a dimension: ``<dim>_from_<source>``."""
    return f"{dimension}_from_{source}"


def to_pmemo_scale(value: np.ndarray | float) -> np.ndarray | float:
    """The models' [-1, 1] to PMEmo's [0, 1] (the inverse of ingestion's ``2v - 1``)."""
    return (value + 1.0) / 2.0


@dataclass
class Predictor:
    """A variant's ensemble, its separator and settings, loaded once.

    Attributes:
        models: ``(label, model, standardiser)`` per selected model, label
            ``r<repeat>o<outer>``.
        sources: The inputs the models take, in order.
        representation: ``log_mel``, ``chroma``, ``cqt`` or ``waveform``.
        feature_options: The features stage's options the variant was trained with.
        shape: The model input's shape arguments (``n_frames`` or ``n_samples``).
        separator: The loaded separator, or None for a mix-only variant.
        clip_options: ``clip_seconds``, ``sample_rate``, ``channels``.
        apply: How to apply the separator.
        info: ``variant``, ``run_id``, ``corpus``, ``audio``: printed with results.
    """

    models: list[tuple[str, torch.nn.Module, Standardiser]]
    sources: list[str]
    representation: str
    feature_options: dict[str, Any]
    shape: dict[str, int]
    separator: LoadedSeparator | None
    clip_options: dict[str, Any]
    apply: ApplyOptions
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def synthetic(self) -> bool:
        """Whether the training corpus was the synthetic one."""
        return str(self.info.get("corpus", "")) == "synthetic"

    def predict_files(
        self,
        paths: Iterable[str | Path],
        windows: bool = False,
        hop_seconds: float | None = None,
        progress: bool = False,
    ) -> pd.DataFrame:
        """One row per file (or per window and one ``mean`` row per file with
        ``windows``); a file that fails gets a row with its ``error`` and no values.

        Columns: ``path``, ``window``, ``start_s``, then for each dimension
        ``<dim>`` (PMEmo's [0, 1]), ``<dim>_sd`` (the ensemble's standard deviation
        on that scale), ``<dim>_model`` ([-1, 1]), then ``error``.
        """
        paths = [str(p) for p in paths]
        rows: list[dict[str, Any]] = []
        items = bar(paths, desc="predicting", unit="file") if progress else paths
        for path in items:
            try:
                rows += self._predict_file(path, windows, hop_seconds)
            except (AudioError, ValueError, RuntimeError) as error:
                # the caller reports failures (one line each in the CLI)
                logger.info("%s not predicted: %s", path, error)
                rows.append({"path": path, "window": None, "error": str(error)})
        table = pd.DataFrame(rows, columns=self.columns())
        return table

    @property
    def explained(self) -> list[str]:
        """The sources whose contributions are reported: every source of a
        multi-source EmoMucs ensemble, none otherwise."""
        if len(self.sources) < 2 or any(
            getattr(model, "sources", None) is None for _, model, _ in self.models
        ):
            return []
        return list(self.sources)

    def columns(self) -> list[str]:
        """The columns of :meth:`predict_files`' table."""
        values = [
            f"{dim}{suffix}" for dim in DIMENSIONS for suffix in ("", "_sd", "_model")
        ]
        contributions = [
            contribution_column(dim, source)
            for dim in DIMENSIONS
            for source in self.explained
        ]
        return ["path", "window", "start_s", *values, *contributions, "error"]

    def ensemble_contributions(self, features: dict[str, Any]) -> np.ndarray | None:
        """``(models, windows, sources, 2)``: each model's output minus its output
        with that source's input replaced by the features of digital silence (the
        contributions stage's ``silence`` ablation, per track), on [-1, 1]; None
        when the ensemble has no sources to explain."""
        if not self.explained:
            return None
        silence = silence_features(features)
        x = select_inputs(features, self.sources, features["music_ids"].tolist())
        result = []
        for _, model, standardiser in self.models:
            intact = predict(model, standardiser(x), batch_size=16).numpy()
            changes = []
            for i in range(len(self.sources)):
                ablated = x.clone()
                ablated[:, i] = silence
                without = predict(model, standardiser(ablated), batch_size=16)
                changes.append(intact - without.numpy())
            result.append(np.stack(changes, axis=1))
        return np.stack(result)

    def ensemble_outputs(self, features: dict[str, Any]) -> np.ndarray:
        """``(models, windows, 2)`` outputs on [-1, 1] of every model of the ensemble
        for a feature set of windows."""
        ids = features["music_ids"].tolist()
        x = select_inputs(features, self.sources, ids, "new audio")
        outputs = []
        for _, model, standardiser in self.models:
            inputs = standardiser(x)
            if not isinstance(model, EmoMucs):  # one source: (batch, ...) as trained
                inputs = inputs[:, 0]
            outputs.append(predict(model, inputs, batch_size=16).numpy())
        return np.stack(outputs)

    def features_of(self, audio: np.ndarray, rate: int, starts: list[int]) -> dict:
        """The variant's feature set of the windows of one file starting at
        ``starts`` (in samples of the clip rate, after conversion)."""
        window = round(float(self.clip_options["clip_seconds"]) * self.clip_rate)
        clips = {
            index: np.ascontiguousarray(
                fix_length(audio[:, start : start + window], window), dtype=np.float32
            )
            for index, start in enumerate(starts)
        }
        options = self.feature_options
        if self.separator is None:
            # the features stage down-mixes and resamples the clips itself
            data = AudioSet(self.clip_rate, clips, (), {"source": "mix"})
        else:
            stems = separate_tracks(
                clips,
                self.clip_rate,
                self.separator,
                int(options["sample_rate"]),
                self.apply,
                StemsCache(None),
                progress=False,
            )
            data = AudioSet(
                int(options["sample_rate"]),
                stems,
                self.separator.stem_names,
                {"separator": self.separator.identity},
            )
        features = FEATURE_FUNCTIONS[self.representation](data, options)
        got = features["values"].shape[-1]
        wanted = self.shape.get("n_frames", self.shape.get("n_samples"))
        if got != wanted:
            raise PredictError(
                f"features of {got} steps, the model takes {wanted}: clip_seconds "
                f"{self.clip_options['clip_seconds']} or the clip rate differ from "
                "the training run's"
            )
        return features

    @property
    def clip_rate(self) -> int:
        return int(self.clip_options["sample_rate"])

    def _predict_file(
        self, path: str, windows: bool, hop_seconds: float | None
    ) -> list[dict[str, Any]]:
        raw, rate = decode_audio(path)
        audio, _ = _conform(raw, rate, self.clip_options)
        window = round(float(self.clip_options["clip_seconds"]) * self.clip_rate)
        if windows:
            hop = round(
                float(hop_seconds or self.clip_options["clip_seconds"]) * self.clip_rate
            )
            starts = window_starts(audio.shape[-1], window, max(1, hop))
        else:
            # one clip from the middle: a chorus's or a song's most typical part
            starts = [max(0, (audio.shape[-1] - window) // 2)]
        features = self.features_of(audio, rate, starts)
        outputs = self.ensemble_outputs(features)
        contributions = self.ensemble_contributions(features)
        rows = [
            self._row(
                path,
                i if windows else None,
                start,
                outputs[:, i],
                None if contributions is None else contributions[:, i],
            )
            for i, start in enumerate(starts)
        ]
        if windows:
            mean = None if contributions is None else contributions.mean(axis=1)
            rows.append(self._row(path, MEAN_WINDOW, None, outputs.mean(axis=1), mean))
        return rows

    def _row(
        self,
        path: str,
        window: Any,
        start: int | None,
        outputs: np.ndarray,
        contributions: np.ndarray | None = None,
    ) -> dict[str, Any]:
        """One row from ``(models, 2)`` outputs (their mean and spread) and
        ``(models, sources, 2)`` contributions (their mean, on PMEmo's scale)."""
        row: dict[str, Any] = {
            "path": path,
            "window": window,
            "start_s": None if start is None else start / self.clip_rate,
            "error": None,
        }
        for d, dim in enumerate(DIMENSIONS):
            mean = float(outputs[:, d].mean())
            row[f"{dim}_model"] = mean
            row[dim] = float(to_pmemo_scale(mean))
            # sd on [0, 1]: half the sd on [-1, 1]
            row[f"{dim}_sd"] = float(outputs[:, d].std() / 2.0)
            if contributions is not None:
                for i, source in enumerate(self.explained):
                    # a change of v on [-1, 1] is v / 2 on [0, 1]
                    mean = float(contributions[:, i, d].mean() / 2.0)
                    row[contribution_column(dim, source)] = mean
        return row


def build_predictor(
    cv_models: dict[str, Any],
    separator_options: dict[str, Any] | None,
    clip_options: dict[str, Any],
    apply_options: dict[str, Any] | None = None,
    checkpoint: str | None = None,
    info: dict[str, Any] | None = None,
) -> Predictor:
    """A :class:`Predictor` for a variant's ``cv_models``.

    Args:
        cv_models: The variant's nested-CV artifact.
        separator_options: ``separation.separator`` parameters naming the separator
            the variant was trained with (its identity must match the one stored
            in ``cv_models["inputs"]["audio"]``); ignored for mix-only variants.
        clip_options: The clipping stage's ``clip_seconds``, ``sample_rate``,
            ``channels``.
        apply_options: ``separation.apply``.
        checkpoint: ``r<repeat>o<outer>`` to use one model instead of the ensemble.
        info: What to print with the results (``variant``, ``run_id``, ``corpus``).

    Raises:
        PredictError: The separator is not the training one, or is the oracle.
    """
    inputs = cv_models["inputs"]
    audio = str(inputs["audio"])
    settings = dict(inputs["features"])
    representation = str(inputs["representation"])
    shape_keys = ("n_frames", "n_mels") if representation in SPECTRAL else ()
    shape = {
        k: int(settings.pop(k)) for k in (*shape_keys, "n_samples") if k in settings
    }
    feature_options: dict[str, Any] = {
        "sample_rate": int(settings.pop("sample_rate")),
        "length_tolerance_s": 1e9,  # one file's windows all have the clip's length
    }
    if representation == "log_mel":
        feature_options["log_mel"] = {
            "n_mels": shape["n_mels"],
            **{k: settings[k] for k in ("n_fft", "hop_length", "top_db")},
        }
    elif representation in SPECTRAL:  # chroma, constant-Q: their settings as recorded
        wanted = inspect.signature(SPECTRAL[representation]).parameters
        feature_options[representation] = {
            k: v for k, v in settings.items() if k in wanted
        }
    separator = None
    if audio != "mix":
        if audio == "oracle":
            raise PredictError(
                "this variant was trained on the corpus' true stems (oracle): new "
                "audio has none; train it with a local or pretrained separator"
            )
        spec = SeparatorSpec.from_options(dict(separator_options or {}))
        if spec.kind == "oracle":
            raise PredictError("predict needs a separator model, not oracle")
        separator = load_separator(spec)
        if separator.identity != audio:
            raise PredictError(
                f"the variant was trained on stems of {audio}, but the separator "
                f"the parameters name is {separator.identity}: point "
                "separation.separator at the one it was trained with"
            )
    chosen = [
        (f"r{m.repeat}o{m.outer}", m.checkpoint) for m in selected_models(cv_models)
    ]
    if checkpoint is not None:
        chosen = [(label, c) for label, c in chosen if label == checkpoint]
        if not chosen:
            labels = [f"r{m.repeat}o{m.outer}" for m in selected_models(cv_models)]
            raise PredictError(f"no checkpoint {checkpoint!r}; there are {labels}")
    models = [
        (label, from_checkpoint(c).eval(), Standardiser.from_state(c["standardiser"]))
        for label, c in chosen
    ]
    return Predictor(
        models=models,
        sources=list(cv_models["experiment"]["sources"]),
        representation=representation,
        feature_options=feature_options,
        shape=shape,
        separator=separator,
        clip_options={
            "clip_seconds": float(clip_options["clip_seconds"]),
            "sample_rate": int(clip_options["sample_rate"]),
            "channels": int(clip_options["channels"]),
        },
        apply=ApplyOptions.from_options(apply_options),
        info={
            "variant": cv_models.get("label"),
            "audio": audio,
            "models": len(models),
            **(info or {}),
        },
    )


def predict_emotions(
    files: pd.DataFrame,
    cv_models: dict[str, Any],
    options: dict[str, Any],
    separation: dict[str, Any],
    clipping: dict[str, Any],
) -> pd.DataFrame:
    """Valence and arousal of every file of ``files`` (see
    :meth:`Predictor.predict_files`), by the variant's ensemble.

    Decodes the files the table names and reads the separator's weights: the
    documented exceptions to "nodes touch no files" (the table of paths is what the
    MLflow model receives too).

    Args:
        files: A ``path`` column.
        cv_models: The variant's nested-CV artifact.
        options: ``predict`` parameters (``windows``, ``hop_seconds``,
            ``checkpoint``, ``variant``).
        separation: ``separation`` parameters (``separator``, ``apply``).
        clipping: ``clipping`` parameters.
    """
    variant = options.get("variant") or cv_models.get("label")
    predictor = build_predictor(
        cv_models,
        separation.get("separator"),
        clipping,
        separation.get("apply"),
        checkpoint=options.get("checkpoint"),
        info={"variant": variant},
    )
    table = predictor.predict_files(
        files["path"],
        windows=bool(options.get("windows", False)),
        hop_seconds=options.get("hop_seconds"),
    )
    failed = table[table["error"].notna()]
    for path, error in zip(failed["path"], failed["error"], strict=True):
        logger.warning("%s: not predicted: %s", path, error)
    logger.info(
        "predict: %d files with %s (%d models); %d failed",
        len(files),
        predictor.info["variant"],
        len(predictor.models),
        len(failed),
    )
    return table.assign(variant=variant)


def list_inputs(options: dict[str, Any]) -> pd.DataFrame:
    """The ``predict.paths`` parameter's files and folders as a table of paths."""
    paths = options.get("paths") or []
    if isinstance(paths, str):
        paths = [paths]
    return find_audio_files(paths)
