"""The separation and separator_training pipelines on seconds of synthetic audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from emomucs import SOURCES
from emomucs.audio import AudioSet, resample
from emomucs.config_loader import ConfigLoader
from emomucs.datasets.demucs_repo_dataset import DemucsRepoDataset
from emomucs.pipelines import separation, separator_training
from emomucs.separation import ApplyOptions, SeparatorSpec, TrainingOptions, sdr
from emomucs.settings import CONFIG_LOADER_ARGS
from tests.separation.synth import synth_multitrack, synth_track
from tests.separation.tiny import tiny_htdemucs, write_repo

CONF = Path(__file__).resolve().parents[2] / "conf" / "base" / "parameters"
STEM_RATE, CLIP_RATE, OUTPUT_RATE = 16000, 8000, 8000
IDS = (11, 12, 13)


class KeptDataset(MemoryDataset):
    """Memory the runner does not release, so the test can read every output."""

    def _release(self) -> None:
        pass


def _kept(*names: str) -> dict[str, KeptDataset]:
    return {name: KeptDataset() for name in names}


@pytest.fixture(scope="module")
def corpus():
    """Chorus-length true stems at 16 kHz and 1.5 s clips cut 1 s in, at 8 kHz."""
    stems, clips = {}, {}
    for music_id in IDS:
        track = synth_track(3.0, STEM_RATE, seed=music_id)
        for source in SOURCES:
            stems[f"{music_id}/{source}"] = lambda a=track[source]: (a, STEM_RATE)
        chorus = resample(sum(track.values()), STEM_RATE, CLIP_RATE)
        clips[music_id] = np.ascontiguousarray(chorus[:, CLIP_RATE : CLIP_RATE + 12000])
    table = pd.DataFrame({"musicId": list(IDS), "offset_s": 1.0, "padded_s": 0.0})
    return AudioSet(CLIP_RATE, clips), table, stems


def _options(tmp_path, **separator):
    return {
        "separator": separator,
        "apply": {"batch_size": 2},
        "output_sample_rate": OUTPUT_RATE,
        "cache_dir": str(tmp_path / "cache"),
        "seed": 0,
        "progress": False,
    }


def _run_separation(corpus, options, oracle_stems=None):
    clips, table, stems = corpus
    catalog = DataCatalog(
        {
            "clips": MemoryDataset(clips),
            "clip_table": MemoryDataset(table),
            "oracle_stems": MemoryDataset(
                stems if oracle_stems is None else oracle_stems
            ),
            "params:separation": MemoryDataset(options),
            **_kept("stems", "mix", "separation_sdr"),
        }
    )
    SequentialRunner().run(separation.create_pipeline(), catalog)
    return {name: catalog.load(name) for name in ("stems", "mix", "separation_sdr")}


def test_oracle_stems_sum_to_the_mix(corpus, tmp_path):
    result = _run_separation(corpus, _options(tmp_path, kind="oracle"))
    stems, mix = result["stems"], result["mix"]
    assert stems.attrs["separator"] == "oracle" and stems.sources == SOURCES
    assert stems.sample_rate == mix.sample_rate == OUTPUT_RATE
    for music_id in IDS:
        assert stems.audio[music_id].shape == (4, 1, 12000)
        assert mix.audio[music_id].shape == (1, 12000)
        total = stems.audio[music_id].sum(axis=0)
        # cut-then-resample against resample-then-cut: equal but for filter edges
        assert sdr(mix.audio[music_id][None], total[None])[0] > 30.0
    assert result["separation_sdr"]["available"]
    assert result["separation_sdr"]["mean"]["model_db"] > 60.0


def test_oracle_without_true_stems_fails_clearly(corpus, tmp_path):
    from emomucs.errors import DatasetInputError

    with pytest.raises(DatasetInputError, match="no true stems"):
        _run_separation(corpus, _options(tmp_path, kind="oracle"), oracle_stems={})


def test_local_separator_gives_mono_stems_and_caches_every_track(corpus, tmp_path):
    write_repo(tmp_path / "repo", "tiny", tiny_htdemucs())
    options = _options(tmp_path, kind="local", name="tiny", repo=str(tmp_path / "repo"))
    result = _run_separation(corpus, options, oracle_stems={})
    stems = result["stems"]
    assert stems.attrs["separator"].startswith("local:tiny:")
    assert all(stems.audio[i].shape == (4, 1, 12000) for i in IDS)
    assert result["separation_sdr"] == {
        "available": False,
        "reason": "no true stems for these clips (<dataset_root>/stems is absent)",
        "separator": stems.attrs["separator"],
    }
    assert len(list((tmp_path / "cache").glob("*.npz"))) == len(IDS)


def test_trained_separator_is_loaded_by_separation(corpus, tmp_path):
    multitrack = {
        key: (lambda a=audio, r=rate: (a, r))
        for key, (audio, rate) in synth_multitrack(5, 1.5, 8000, seed=1).items()
    }
    params = {
        "seed": 0,
        "valid_fraction": 0.4,
        "progress": False,
        "training": {
            "sample_rate": 8000,
            "model": {"channels": 8, "depth": 2, "nfft": 512, "t_heads": 2},
            "segment_s": 0.5,
            "batch_size": 4,
            "steps": 4,
            "augment": {"shift_s": 0.1, "remix_group": 2},
        },
        "evaluation": {"overlap": 0.25},
    }
    catalog = DataCatalog(
        {
            "separator_training_stems": MemoryDataset(multitrack),
            "params:separator_training": MemoryDataset(params),
            "separator_model": DemucsRepoDataset(
                str(tmp_path / "repo"), "emomucs_compact"
            ),
            **_kept("separator_sdr", "separator_split", "separator_training_history"),
        }
    )
    SequentialRunner().run(separator_training.create_pipeline(), catalog)
    report = catalog.load("separator_sdr")
    split = catalog.load("separator_split")
    assert len(split["valid"]) == 2 and report["songs"] == split["valid"]
    assert set(report["sources"]) == set(SOURCES) and report["tracks"] == 2
    assert catalog.load("separator_training_history")["steps"] == 4

    options = _options(
        tmp_path, kind="local", name="emomucs_compact", repo=str(tmp_path / "repo")
    )
    stems = _run_separation(corpus, options)["stems"]
    assert stems.attrs["separator"].startswith("local:emomucs_compact:")


def test_project_parameters_are_valid_options():
    arguments = {**CONFIG_LOADER_ARGS, "default_run_env": "base"}
    loader = ConfigLoader(str(CONF.parents[1]), **arguments)
    separation_params = loader["parameters"]["separation"]
    spec = SeparatorSpec.from_options(separation_params["separator"])
    assert (spec.kind, spec.name) == ("local", "emomucs_compact")
    assert spec.repo == loader["globals"]["separator_repo"]
    ApplyOptions.from_options(separation_params["apply"])
    assert separation_params["output_sample_rate"] == 22050
    training = yaml.safe_load((CONF / "separator_training.yml").read_text())
    options = TrainingOptions.from_options(training["separator_training"]["training"])
    assert options.batch_size % options.augment.remix_group == 0
    ApplyOptions.from_options(training["separator_training"]["evaluation"])
