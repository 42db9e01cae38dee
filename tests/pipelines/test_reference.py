"""The reference regressor: ridge on per-band log-mel statistics, on the shared folds.

A small synthetic corpus (150 tracks of 10 s, a few of them zero-padded) goes through
the real ``reference`` pipeline (folds, log-mel features, band statistics, ridge)
with an in-memory catalog: on the true stems it must come within the tolerance of
the corpus' label-noise ceiling, which is what makes that ceiling one the paper's
features can reach.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from emomucs import SOURCES
from emomucs.audio import AudioSet, fix_length
from emomucs.datasets import OptionalJSONDataset
from emomucs.fingerprints import corpus_fingerprint
from emomucs.pipelines.reference import create_pipeline
from emomucs.pipelines.reference.nodes import (
    score_reference,
    summarise_bands,
    summarise_reference,
)
from emomucs.synthetic import (
    design_corpus,
    label_ceiling,
    noiseless_labels,
    render_track,
)
from emomucs.training.folds import fingerprint_folds

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PARAMETERS = PROJECT_ROOT / "conf" / "base" / "parameters"
RATE = 22050
CLIP_S = 10.0
N_TRACKS = 150
OUTER_FOLDS = 5
NOISE_SD = 0.05
"""Half the default noise: with 120 training tracks per outer fold, the default noise
would make the ridge's estimation error (not the features) decide the gap."""


class _KeptMemoryDataset(MemoryDataset):
    """Survives the run, so the test can read the outputs."""

    def _release(self) -> None:
        pass


def _parameters(stage: str) -> dict:
    return yaml.safe_load((PARAMETERS / f"{stage}.yml").read_text())[stage]


@pytest.fixture(scope="module")
def corpus() -> dict:
    """Mix and true stems of 4 s clips, the track table and the ceiling."""
    designs, annotations = design_corpus(
        N_TRACKS,
        seed=31,
        chorus_range_s=(9.0, 11.0),
        short_below_s=CLIP_S,
        short_fraction=0.1,
        noise_sd=NOISE_SD,
    )
    clip = round(CLIP_S * RATE)
    stems, mix, rows = {}, {}, []
    for design, (arousal, valence) in zip(designs, annotations, strict=True):
        audio = fix_length(render_track(design, RATE), clip)
        stems[design.music_id] = audio
        mix[design.music_id] = audio.sum(axis=0)
        padded = max(0.0, CLIP_S - design.duration_s)
        rows.append(
            {
                "musicId": design.music_id,
                "valence": 2 * valence - 1,
                "arousal": 2 * arousal - 1,
                "padded_s": padded,
            }
        )
    truth = np.array([noiseless_labels(d) for d in designs])
    ceiling = {
        dimension: label_ceiling(truth[:, index], annotations[:, index], NOISE_SD)
        for index, dimension in enumerate(("arousal", "valence"))
    }
    return {
        "mix": AudioSet(RATE, mix, attrs={"kind": "clips"}),
        "stems": AudioSet(RATE, stems, SOURCES, {"separator": "oracle:truth"}),
        "track_table": pd.DataFrame(rows),
        "ceiling": ceiling,
    }


@pytest.fixture(scope="module")
def reference_run(corpus) -> dict:
    catalog = DataCatalog(
        {
            "mix": MemoryDataset(corpus["mix"], copy_mode="assign"),
            "stems": MemoryDataset(corpus["stems"], copy_mode="assign"),
            "track_table": MemoryDataset(corpus["track_table"]),
            "corpus_ceiling": MemoryDataset(corpus["ceiling"]),
            "params:features": MemoryDataset(_parameters("features")),
            "params:cv": MemoryDataset(
                {"outer_folds": OUTER_FOLDS, "inner_folds": 2, "seed": 7}
            ),
            "params:reference": MemoryDataset(_parameters("reference")),
            **{
                name: _KeptMemoryDataset()
                for name in ("reference_scores", "reference_summary", "cv_folds")
            },
        }
    )
    SequentialRunner().run(create_pipeline(), catalog)
    return {
        name: catalog.load(name)
        for name in ("reference_scores", "reference_summary", "cv_folds")
    }


def test_reference_on_true_stems_reaches_the_label_noise_ceiling(reference_run):
    summary = reference_run["reference_summary"]
    assert summary["stems"] == "oracle:truth"
    assert summary["n_tracks"] == N_TRACKS
    assert summary["n_outer_folds"] == OUTER_FOLDS
    for dimension in ("valence", "arousal"):
        ceiling = summary["ceiling"][dimension]["r2_empirical"]
        reached = summary["pooled_r2"]["stems"][dimension]
        assert reached >= ceiling - 0.05, (dimension, reached, ceiling)
        assert summary["gap_to_ceiling"][dimension] == pytest.approx(ceiling - reached)
    assert summary["reaches_ceiling"] is True
    # each dimension's cues live in two stems: a stem that carries none of them
    # explains less of it than all stems together
    pooled = summary["pooled_r2"]
    assert pooled["bass"]["valence"] < pooled["stems"]["valence"] - 0.1
    assert pooled["vocals"]["arousal"] < pooled["stems"]["arousal"] - 0.1


def test_scores_cover_every_input_set_dimension_and_scope(reference_run):
    scores = reference_run["reference_scores"]
    assert set(scores["input_set"]) == {"mix", "stems", "stems_concatenated", *SOURCES}
    assert set(scores["dimension"]) == {"valence", "arousal"}
    counts = scores.groupby(["input_set", "dimension", "scope"]).size()
    assert counts.xs("fold", level="scope").eq(OUTER_FOLDS).all()
    for scope in ("mean", "sd", "pooled"):
        assert counts.xs(scope, level="scope").eq(1).all()
    pooled = scores[scores["scope"] == "pooled"]
    assert pooled["n_tracks"].eq(N_TRACKS).all()
    assert np.isfinite(scores[["rmse", "r2"]].to_numpy()).all()
    # the folds are the experiments' shared table: every track tested exactly once
    folds = reference_run["cv_folds"]
    assert (folds["inner_fold"] == -1).sum() == N_TRACKS


def _bands(values: np.ndarray, sources: list[str], representation="log_mel") -> dict:
    return {
        "representation": representation,
        "sources": sources,
        "music_ids": torch.arange(1, len(values) + 1),
        "values": torch.from_numpy(values.astype(np.float32)),
        "sample_rate": RATE,
        "settings": {"hop_length": 512, "audio_attrs": {"separator": "x"}},
    }


def test_band_statistics_leave_out_the_padding_at_the_end():
    values = np.zeros((2, 1, 3, 100))
    values[:, :, :, 50:] = -80.0  # the second half is the padding's floor
    table = pd.DataFrame({"musicId": [1, 2], "padded_s": [50 * 512 / RATE, 0.0]})
    options = {"statistics": ["mean", "sd"], "exclude_padding": True}
    bands = summarise_bands(_bands(values, ["mix"]), table, options)
    assert bands["values"].shape == (2, 1, 6)
    np.testing.assert_allclose(bands["values"][0, 0], 0.0)
    np.testing.assert_allclose(bands["values"][1, 0], [-40.0] * 3 + [40.0] * 3)
    kept = summarise_bands(
        _bands(values, ["mix"]), table, {**options, "exclude_padding": False}
    )
    np.testing.assert_allclose(kept["values"][0, 0], [-40.0] * 3 + [40.0] * 3)


def test_bad_inputs_are_named():
    values = np.zeros((2, 1, 3, 10))
    table = pd.DataFrame({"musicId": [1], "padded_s": [0.0]})
    options = {"statistics": ["mean"], "exclude_padding": True}
    with pytest.raises(ValueError, match="needs a log_mel feature set"):
        summarise_bands(_bands(values, ["mix"], "waveform"), table, options)
    with pytest.raises(ValueError, match="unknown statistics"):
        summarise_bands(_bands(values, ["mix"]), table, {"statistics": ["median"]})
    with pytest.raises(
        ValueError, match="track 2: in the features, not in track_table"
    ):
        summarise_bands(_bands(values, ["mix"]), table, options)
    full = pd.DataFrame(
        {"musicId": [1, 2], "padded_s": 0.0, "valence": 0.0, "arousal": 0.0}
    )
    bands = summarise_bands(_bands(values, ["mix"]), full, options)
    folds = pd.DataFrame(
        {"outer_fold": [0, 0, 0], "musicId": [1, 2, 3], "inner_fold": [0, 1, -1]}
    )
    with pytest.raises(ValueError, match="track 3: in cv_folds, not in the mix"):
        score_reference(bands, bands, full, folds, _parameters("reference"))


def test_a_corpus_without_ceiling_gets_a_summary_without_one(
    tmp_path, corpus, reference_run
):
    missing = OptionalJSONDataset(filepath=str(tmp_path / "ceiling.json"))
    assert missing.load() == {}
    stems = {"statistics": ["mean", "sd"], "separator": "htdemucs"}
    summary = summarise_reference(
        reference_run["reference_scores"],
        stems,
        missing.load(),
        corpus["track_table"],
        reference_run["cv_folds"],
        {"tolerance": 0.05},
    )
    assert summary["ceiling"] is None and "reaches_ceiling" not in summary
    assert summary["stems"] == "htdemucs"
    # named like a variant's summary: the stems and the corpus, on these folds
    assert summary["key"] == f"htdemucs__{corpus_fingerprint(corpus['track_table'])}"
    assert summary["folds"] == fingerprint_folds(reference_run["cv_folds"])
    assert set(summary["pooled_r2"]) == {"mix", "stems", "stems_concatenated", *SOURCES}
