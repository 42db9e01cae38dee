"""The synthetic_corpus pipeline: in memory, and written to disk through its catalog."""

from __future__ import annotations

import json
import re
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from omegaconf import OmegaConf

from emomucs import SOURCES
from emomucs.audio import set_channels
from emomucs.pipelines.synthetic_corpus import create_pipeline
from emomucs.pipelines.synthetic_corpus.nodes import render_multitrack, render_tracks
from emomucs.synthetic import (
    CUE_SOURCES,
    chorus_durations,
    design_corpus,
    render_track,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CATALOG = PROJECT_ROOT / "conf" / "base" / "catalog" / "synthetic_corpus.yml"
PARAMETERS = PROJECT_ROOT / "conf" / "base" / "parameters" / "synthetic_corpus.yml"
PMEMO_HEADER = (
    "musicId,fileName,title,artist,album,duration,chorus_start_time,chorus_end_time"
)
OUTPUTS = [
    "synthetic_metadata",
    "synthetic_static_annotations",
    "synthetic_audio",
    "synthetic_ground_truth",
    "synthetic_ceiling",
    "synthetic_contributions",
    "synthetic_multitrack",
]
MM_SS = re.compile(r"^\d{2}:[0-5]\d$")


def _tiny_options() -> dict:
    """The shipped parameters, shrunk to four tracks of a few seconds."""
    options = yaml.safe_load(PARAMETERS.read_text())["synthetic_corpus"]
    options.update(
        n_tracks=4,
        seed=11,
        chorus_range_s=[2.0, 4.0],
        short_below_s=3.0,
        short_fraction=0.25,
    )
    options["multitrack"].update(n_tracks=2, duration_s=2.0)
    return options


class _KeptMemoryDataset(MemoryDataset):
    """Survives the run, so a test can read intermediate outputs (ground truth)."""

    def _release(self) -> None:
        pass


class _ChunkedMemoryDataset(_KeptMemoryDataset):
    """An in-memory AudioFolderDataset: keeps every chunk a generator node saves (a
    MemoryDataset keeps the last) and loads as ``key -> loader``."""

    def save(self, data: dict) -> None:
        previous = super().load() if self._exists() else {}
        super().save({**previous, **data})

    def load(self) -> dict:
        return {
            key: partial(lambda v: v, value) for key, value in super().load().items()
        }


def _seconds(mm_ss: str) -> int:
    minutes, seconds = mm_ss.split(":")
    return int(minutes) * 60 + int(seconds)


@pytest.fixture(scope="module")
def in_memory() -> tuple[dict, dict]:
    options = _tiny_options()
    catalog = DataCatalog(
        {
            "params:synthetic_corpus": MemoryDataset(options),
            **{name: _KeptMemoryDataset() for name in OUTPUTS},
            **{
                name: _ChunkedMemoryDataset()
                for name in ("synthetic_audio", "synthetic_multitrack")
            },
        }
    )
    SequentialRunner().run(create_pipeline(), catalog)
    outputs = {name: catalog.load(name) for name in OUTPUTS}
    for name in ("synthetic_audio", "synthetic_multitrack"):
        outputs[name] = {key: load() for key, load in outputs[name].items()}
    for name, folder in (
        ("synthetic_choruses", "chorus/"),
        ("synthetic_stems", "stems/"),
    ):
        outputs[name] = {
            key.removeprefix(folder): audio
            for key, audio in outputs["synthetic_audio"].items()
            if key.startswith(folder)
        }
    return outputs, options


def designs_of(options: dict, count: int = 4) -> list:
    """The designs of the first ``count`` tracks the corpus options describe."""
    return design_corpus(
        count,
        options["seed"],
        options["first_music_id"],
        tuple(options["chorus_range_s"]),
        options["short_below_s"],
        options["short_fraction"],
        options["label_noise_sd"],
    )[0]


def test_tables_have_the_pmemo_columns_and_formats(in_memory):
    outputs, options = in_memory
    metadata = outputs["synthetic_metadata"]
    assert ",".join(metadata.columns) == PMEMO_HEADER
    ids = list(range(options["first_music_id"], options["first_music_id"] + 4))
    assert metadata["musicId"].tolist() == ids
    assert metadata["fileName"].tolist() == [f"{i}.flac" for i in ids]
    assert (metadata["duration"] == metadata["duration"].round(1)).all()
    assert metadata["chorus_start_time"].str.match(MM_SS).all()
    assert metadata["chorus_end_time"].str.match(MM_SS).all()
    spans = metadata["chorus_end_time"].map(_seconds) - metadata[
        "chorus_start_time"
    ].map(_seconds)
    assert (abs(spans - metadata["duration"]) <= 0.5).all()
    # exactly one of four choruses is shorter than the clip length
    assert (metadata["duration"] < options["short_below_s"]).sum() == 1

    annotations = outputs["synthetic_static_annotations"]
    assert list(annotations.columns) == ["musicId", "Arousal(mean)", "Valence(mean)"]
    assert annotations["musicId"].tolist() == ids
    labels = annotations[["Arousal(mean)", "Valence(mean)"]]
    assert ((labels >= 0) & (labels <= 1)).all().all()
    assert (labels == labels.round(3)).all().all()


def test_audio_matches_the_metadata_and_stems_sum_to_the_mix(in_memory):
    outputs, options = in_memory
    choruses, stems = outputs["synthetic_choruses"], outputs["synthetic_stems"]
    metadata = outputs["synthetic_metadata"].set_index("musicId")
    assert sorted(choruses) == sorted(str(i) for i in metadata.index)
    assert sorted(stems) == sorted(f"{i}/{s}" for i in metadata.index for s in SOURCES)
    for music_id, row in metadata.iterrows():
        mix, rate = choruses[str(music_id)]
        assert rate == options["sample_rate"]
        assert mix.shape == (2, round(row["duration"] * rate))
        parts = np.stack([stems[f"{music_id}/{source}"][0] for source in SOURCES])
        # mono stems (each stereo stem's channel mean) sum to the chorus' channel mean
        assert parts.shape == (len(SOURCES), 1, mix.shape[-1])
        np.testing.assert_array_equal(
            parts.sum(axis=0, dtype=np.float64), mix.mean(axis=0, keepdims=True)
        )
        assert np.abs(mix[0] - mix[1]).max() > 0  # a stereo chorus, not two copies


def test_ground_truth_and_ceiling_describe_the_labels(in_memory):
    outputs, options = in_memory
    truth = outputs["synthetic_ground_truth"]
    for column in (*CUE_SOURCES, "tempo_bpm", "major", "mode", "render_seed"):
        assert column in truth or column == "vocal_register"
    assert "vocal_midi" in truth
    annotations = outputs["synthetic_static_annotations"]
    np.testing.assert_array_equal(truth["arousal"], annotations["Arousal(mean)"])
    noise = (
        truth[["arousal", "valence"]].to_numpy()
        - truth[["arousal_noiseless", "valence_noiseless"]].to_numpy()
    )
    assert 0 < np.abs(noise).max() < 5 * options["label_noise_sd"]

    ceiling = outputs["synthetic_ceiling"]
    json.dumps(ceiling)  # the catalog writes it as json
    assert ceiling["noise_sd"] == options["label_noise_sd"]
    for dimension in ("arousal", "valence"):
        result = ceiling[dimension]
        assert 0 < result["noise_var"] <= 4 * options["label_noise_sd"] ** 2
        assert result["r2_theoretical"] == pytest.approx(
            1 - result["noise_var"] / result["expected_label_var"]
        )
        assert -1 <= result["r2_empirical"] <= 1


def test_contributions_give_each_source_its_share_of_each_dimension(in_memory):
    outputs, _ = in_memory
    contributions = outputs["synthetic_contributions"]
    json.dumps(contributions)  # the catalog writes it as json
    assert contributions["cue_sources"] == CUE_SOURCES
    for dimension in ("arousal", "valence"):
        shares = contributions[dimension]
        assert set(shares) == set(SOURCES)
        assert all(share >= 0 for share in shares.values())
        assert sum(shares.values()) == pytest.approx(1.0)
        weights = contributions["label_function_weights"][dimension]
        carriers = {CUE_SOURCES[name] for name in weights}
        assert {s for s, share in shares.items() if share > 0} == carriers
        assert sum(contributions["weight_shares"][dimension].values()) == pytest.approx(
            1.0
        )


def test_benchmark_environment_has_pmemos_size_and_shape():
    """Through Kedro's config loader, as ``kedro run --env benchmark`` reads it."""
    base, benchmark = (
        OmegaConfigLoader(
            str(PROJECT_ROOT / "conf"), base_env="base", default_run_env=env
        )
        for env in ("local", "benchmark")
    )
    options = benchmark["parameters"]["synthetic_corpus"]
    assert options["n_tracks"] == 794
    lengths = chorus_durations(
        np.random.default_rng(options["seed"]),
        options["n_tracks"],
        *options["chorus_range_s"],
        options["short_below_s"],
        options["short_fraction"],
    )
    clip = benchmark["parameters"]["clipping"]["clip_seconds"]
    assert (lengths < clip).sum() == 59
    # only the size and the short share differ from base (an environment replaces a
    # whole top-level key, so the block repeats the rest)
    default = base["parameters"]["synthetic_corpus"]
    differing = {key for key in default if default[key] != options[key]}
    assert differing == {"n_tracks", "short_fraction"}
    # its own root, so the default corpus stays where the base run expects it
    catalog = benchmark["catalog"]
    root = Path(catalog["synthetic_metadata"]["filepath"]).parent
    assert root != Path(base["catalog"]["synthetic_metadata"]["filepath"]).parent
    assert Path(catalog["corpus_ceiling"]["filepath"]).parent == root
    assert Path(catalog["synthetic_contributions"]["filepath"]).parent == root
    assert catalog["synthetic_multitrack"] == base["catalog"]["synthetic_multitrack"]


def test_multitrack_has_four_equal_stems_per_song(in_memory):
    outputs, options = in_memory
    multitrack = outputs["synthetic_multitrack"]
    assert sorted(multitrack) == sorted(
        f"track_{n:03d}/{source}" for n in range(2) for source in SOURCES
    )
    shapes = {audio.shape for audio, _ in multitrack.values()}
    assert shapes == {(2, round(2.0 * options["sample_rate"]))}
    # different songs from the labelled corpus, which uses another seed
    corpus_drums = outputs["synthetic_stems"][f"{options['first_music_id']}/drums"][0]
    assert not np.array_equal(
        multitrack["track_000/drums"][0][:, :1000], corpus_drums[:, :1000]
    )


def test_multitrack_refuses_the_corpus_seed():
    options = _tiny_options()
    options["multitrack"]["seed"] = options["seed"]
    with pytest.raises(ValueError, match="equals the corpus seed"):
        next(render_multitrack(options))


def test_written_corpus_reads_back_like_the_real_pmemo_samples(
    tmp_path, monkeypatch, pmemo_samples
):
    """Through the shipped catalog entries, into a temporary project folder."""
    config = OmegaConf.to_container(OmegaConf.load(CATALOG), resolve=True)
    config = {name: entry for name, entry in config.items() if not name.startswith("_")}
    monkeypatch.chdir(tmp_path)
    options = _tiny_options()
    catalog = DataCatalog.from_config(config)
    catalog["params:synthetic_corpus"] = MemoryDataset(options)
    SequentialRunner().run(create_pipeline(), catalog)

    root = tmp_path / "data" / "01_raw" / "synthetic" / "PMEmo2019"
    real_meta = (pmemo_samples / "metadata.csv").read_text().splitlines()[0]
    assert (root / "metadata.csv").read_text().splitlines()[0] == real_meta
    real_labels = pmemo_samples / "annotations" / "static_annotations.csv"
    labels_header = (root / "annotations" / "static_annotations.csv").read_text()
    assert labels_header.splitlines()[0] == real_labels.read_text().splitlines()[0]

    # read exactly as one reads the real samples
    metadata = pd.read_csv(root / "metadata.csv")
    assert metadata.dtypes.equals(pd.read_csv(pmemo_samples / "metadata.csv").dtypes)
    designs = designs_of(options)
    for design, row in zip(designs, metadata.itertuples(), strict=True):
        chorus = root / "chorus" / row.fileName
        info = sf.info(chorus)
        # lossless 16-bit FLAC: the samples a 16-bit WAV would hold
        assert (info.format, info.samplerate, info.channels, info.subtype) == (
            "FLAC",
            22050,
            2,
            "PCM_16",
        )
        assert info.duration == pytest.approx(row.duration, abs=1e-4)
        mix, _ = sf.read(chorus, dtype="int16", always_2d=True)
        files = [root / "stems" / str(row.musicId) / f"{s}.flac" for s in SOURCES]
        assert {(sf.info(f).channels, sf.info(f).subtype) for f in files} == {
            (1, "PCM_24")
        }
        parts = [sf.read(file, dtype="float64", always_2d=True)[0] for file in files]
        # exact on disk: the stems sum to the chorus' channel mean, sample for sample
        np.testing.assert_array_equal(
            np.sum(parts, axis=0), mix.mean(axis=1, keepdims=True) / 32768.0
        )
        # rendering from ground_truth.csv gives the audio the designs describe, and
        # each stored stem is the down-mix the project made of a stereo stem
        rendered = render_track(design)
        np.testing.assert_array_equal(mix.T / 32768.0, rendered.sum(axis=0))
        for stem, part in zip(rendered, parts, strict=True):
            np.testing.assert_array_equal(part.T, set_channels(stem, 1))
    ceiling = json.loads((root / "ceiling.json").read_text())
    assert set(ceiling) >= {"noise_sd", "arousal", "valence"}
    contributions = json.loads((root / "contributions.json").read_text())
    assert set(contributions) >= {"definition", "arousal", "valence"}
    truth = pd.read_csv(root / "ground_truth.csv")
    assert truth["musicId"].tolist() == metadata["musicId"].tolist()
    multitrack = tmp_path / "data" / "01_raw" / "synthetic" / "multitrack"
    assert sorted(p.name for p in (multitrack / "track_001").iterdir()) == sorted(
        f"{s}.flac" for s in SOURCES
    )


def test_a_mono_corpus_stores_its_stems_as_rendered(in_memory):
    outputs, options = in_memory
    truth = outputs["synthetic_ground_truth"].head(1)
    chunk = next(render_tracks(truth, {**options, "stereo": False}))
    music_id = int(truth["musicId"].iloc[0])
    parts = np.stack([chunk[f"stems/{music_id}/{source}"][0] for source in SOURCES])
    design = designs_of(options)[0]
    assert design.music_id == music_id
    rendered = render_track(design, options["sample_rate"], 1)
    np.testing.assert_array_equal(parts, rendered)  # mono already: stored as rendered
    np.testing.assert_array_equal(chunk[f"chorus/{music_id}"][0], parts.sum(axis=0))
