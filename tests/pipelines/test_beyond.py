"""Beyond the paper, end to end on a tiny corpus: a network per source, EmoMucs on
the harmonic–percussive split, and the harmonic front ends (chroma, constant-Q)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from emomucs.audio import AudioSet
from emomucs.datasets import AudioSetDataset
from emomucs.pipelines.experiments import variant_namespaces
from emomucs.pipelines.experiments.pipeline import create_pipelines, with_upstream
from emomucs.pipelines.experiments.variants import (
    harmonic_variants,
    hpss_variants,
    source_specific_variants,
    twins,
)
from emomucs.pipelines.features.nodes import compute_chroma, compute_constant_q
from emomucs.pipelines.predict.nodes import build_predictor
from emomucs.pipelines.reporting import create_reporting_pipeline
from tests.pipelines.test_experiments import KeptDataset, _config, _param_inputs
from tests.tiny_project import kedro, latest, make_project, make_synthetic_corpus
from tests.training.synthetic import SAMPLE_RATE, make_corpus


def _run(pipe, table, mix, stems):
    """The pipeline and the results table, in memory, 2 epochs, one repeat."""
    params = _config("local", "parameters")
    params["training"] = {
        **params["training"],
        "max_epochs": 2,
        "patience": 1,
        "repeats": 1,
        "cache_dir": None,
        "progress": False,
    }
    params["separation"] = {
        **params["separation"],
        "cache_dir": None,
        "progress": False,
    }
    pipe += create_reporting_pipeline(variant_namespaces(pipe))
    data = {
        "track_table": table,
        "mix": mix,
        "stems": stems,
        "clips": mix,
        "oracle_clip_stems": AudioSet(SAMPLE_RATE, {}),
        "cv_summaries": {},
        "reference_summaries": {},
        "corpus_contributions": {},
    }
    data.update(_param_inputs(params))
    outputs = {d: KeptDataset() for d in pipe.all_outputs()}
    catalog = DataCatalog({**{k: MemoryDataset(v) for k, v in data.items()}, **outputs})
    SequentialRunner().run(pipe, catalog)
    return catalog


def _assert_trained_with_contributions(catalog, namespace, table, sources):
    predictions = catalog.load(f"{namespace}.cv_predictions")
    assert sorted(predictions["musicId"]) == sorted(table["musicId"]), namespace
    assert np.isfinite(predictions[["valence_pred", "arousal_pred"]]).all().all()
    contributions = catalog.load(f"{namespace}.contributions")
    pooled = contributions[contributions["scope"] == "pooled"]
    assert set(pooled["source"]) == set(sources)
    assert set(pooled["method"]) == {"silence", "mean", "shapley"}
    assert np.isfinite(pooled["r2_drop"]).all()


def test_registered_pipelines_run_each_extension_beside_its_twins():
    pipelines = create_pipelines()
    for name, ours in (
        ("source_specific", source_specific_variants()),
        ("emomucs_hpss", hpss_variants()),
        ("harmonic", harmonic_variants()),
    ):
        assert variant_namespaces(pipelines[name]) == sorted(
            [v.namespace for v in ours] + ["baselines.c1d", "emomucs_late.c1d_full"]
        )
    assert "hpss.stems_log_mel" in pipelines["emomucs_hpss"].all_outputs()
    assert "hpss.stems" not in pipelines["emomucs_late"].all_outputs()


def test_source_specific_variant_trains_and_explains_its_sources():
    table, mix, stems = make_corpus(n_tracks=12, seconds=2.0, seed=5)
    pipe = with_upstream(source_specific_variants())
    catalog = _run(pipe, table, mix, stems)
    namespace = "source_specific.late_full"
    models = catalog.load(f"{namespace}.cv_models")
    checkpoint = models["models"][0][0][0]
    own = checkpoint["kwargs"]["source_networks"]
    assert {s: n["model"] for s, n in own.items()} == {"vocals": "C2D", "other": "C2D"}
    assert own["other"]["kwargs"]["n_filters"] == 16
    assert checkpoint["kwargs"]["source_model"] == "C1D"  # drums and bass
    _assert_trained_with_contributions(catalog, namespace, table, stems.sources)
    results = catalog.load("results_table").set_index("variant")
    assert "vocals: C2D" in results.loc[namespace, "label"]
    assert "C2D" in results.loc[namespace, "per_source"]


def test_emomucs_runs_on_the_harmonic_percussive_split_in_a_kedro_project(tmp_path):
    """``kedro run --pipeline=emomucs_hpss`` (up to the variant's summary and
    contributions) in a tiny project: conf, catalog and parameter checks included."""
    project = make_project(
        tmp_path / "project",
        {
            "synthetic_corpus": {
                "n_tracks": 12,
                "chorus_range_s": [1.5, 3.0],
                "short_below_s": 2.0,
                "multitrack": {"n_tracks": 2, "duration_s": 2.0},
            },
            "clipping": {"clip_seconds": 2.0, "min_chorus_s": 1.0},
            "separation": {"cache_dir": None, "progress": False},
            "cv": {"outer_folds": 3, "inner_folds": 2},
            "training": {
                "max_epochs": 2,
                "patience": 1,
                "repeats": 1,
                "cache_dir": None,
                "progress": False,
            },
        },
    )
    make_synthetic_corpus(project)
    namespace = "emomucs_hpss.c1d_late_full"
    kedro(
        project,
        "run",
        "--pipeline=emomucs_hpss",
        f"--to-outputs={namespace}.cv_summary,{namespace}.contribution_summary",
        "--env=tiny",
    )
    stems = AudioSetDataset(
        filepath=str(latest(project, "data/03_primary/hpss/stems.npz"))
    )
    split = stems.load()
    assert tuple(split.sources) == ("drums", "harmonic")
    assert split.attrs["separator"].startswith("callable:emomucs.separation.hpss:")
    assert len(split) == 12
    assert not (project / "data/03_primary/stems.npz").exists()  # Demucs untouched
    features = torch.load(
        latest(project, "data/04_feature/hpss/stems_log_mel.pt"), weights_only=True
    )
    assert tuple(features["values"].shape[:3]) == (12, 2, 40)
    predictions = pd.read_csv(
        latest(project, f"data/07_model_output/{namespace}/cv_predictions.csv")
    )
    assert len(predictions) == 12
    contributions = pd.read_csv(
        latest(project, f"data/08_reporting/{namespace}/contributions.csv")
    )
    pooled = contributions[contributions["scope"] == "pooled"]
    assert set(pooled["source"]) == {"drums", "harmonic"}
    assert np.isfinite(pooled["r2_drop"]).all()
    folder = project / f"data/08_reporting/cv_summaries/{namespace}"
    summaries = [path.name for path in folder.glob("*.json")]
    assert len(summaries) == 1 and summaries[0].startswith("callable-")


def test_harmonic_features_have_their_shapes_and_find_the_pitch_class():
    table, mix, stems = make_corpus(n_tracks=3, seconds=2.0, seed=1)
    options = _config("local", "parameters")["features"]
    frames = 1 + int(2.0 * SAMPLE_RATE) // 512
    chroma = compute_chroma(stems, options)
    assert chroma["representation"] == "chroma"
    assert tuple(chroma["values"].shape) == (3, 4, 12, frames)
    assert 0 <= chroma["values"].min() and chroma["values"].max() <= 1
    cqt = compute_constant_q(mix, options)
    assert tuple(cqt["values"].shape) == (3, 1, 84, frames)
    assert -80 <= cqt["values"].min() and cqt["values"].max() == 0
    # an A (440 Hz) tone: chroma's strongest class is A, CQT's strongest bin A4
    tone = np.sin(2 * np.pi * 440 * np.arange(SAMPLE_RATE) / SAMPLE_RATE)
    a4 = AudioSet(SAMPLE_RATE, {1: tone[None].astype(np.float32)})
    middle = slice(10, -10)
    pitch_class = compute_chroma(a4, options)["values"][0, 0][:, middle].mean(1)
    assert int(pitch_class.argmax()) == 9  # C, C#, ..., A
    bins = compute_constant_q(a4, options)["values"][0, 0][:, middle].mean(1)
    assert (
        int(bins.argmax()) == 12 * 3 + 9
    )  # A4, three octaves and 9 semitones above C1


def test_a_variant_trains_on_a_harmonic_front_end_and_is_paired_with_its_twins():
    table, mix, stems = make_corpus(n_tracks=12, seconds=2.0, seed=5)
    ours = [v for v in harmonic_variants() if v.representation == "chroma"]
    catalog = _run(with_upstream([*ours, *twins()]), table, mix, stems)
    emomucs = "harmonic.c1d_chroma_late_full"
    _assert_trained_with_contributions(catalog, emomucs, table, stems.sources)
    summary = catalog.load(f"{emomucs}.cv_summary")
    assert summary["inputs"]["representation"] == "chroma"
    assert tuple(catalog.load("stems_chroma")["values"].shape[:3]) == (12, 4, 12)
    differences = catalog.load("results_differences")
    # against the mix baseline on the same features, not on log-mel
    baseline = differences[differences["comparison"] == "mix baseline"]
    row = baseline.set_index("variant").loc[emomucs]
    assert (row["baseline"], row["status"]) == ("harmonic.c1d_chroma", "ok")
    # against its log-mel twins, paired on the same folds
    twin = differences[differences["comparison"] == "twin"].set_index("variant")
    assert twin.loc[emomucs, "baseline"] == "emomucs_late.c1d_full"
    assert twin.loc["harmonic.c1d_chroma", "baseline"] == "baselines.c1d"
    assert set(twin["status"]) == {"ok"}
    assert (twin["n_pairs"] == 3).all()  # outer folds × one repeat
    assert np.isfinite(twin["r2_valence_diff"]).all()
    markdown = catalog.load("results_markdown")
    assert "### Beyond the paper: paired differences from the twin" in markdown
    # the paper's grid keeps the log-mel EmoMucs, not the chroma one
    results = catalog.load("results_table").set_index("variant")
    assert results.loc[emomucs, "representation"] == "chroma"
    # predict computes a new file's chroma as training did
    clipping = {**_config("local", "parameters")["clipping"], "clip_seconds": 2.0}
    clipping["channels"] = 1
    predictor = build_predictor(
        catalog.load("harmonic.c1d_chroma.cv_models"), None, clipping
    )
    music_id = int(table["musicId"].iloc[0])
    features = predictor.features_of(mix.audio[music_id], SAMPLE_RATE, [0])
    trained = catalog.load("mix_chroma")
    row = trained["music_ids"].tolist().index(music_id)
    assert torch.allclose(features["values"][0], trained["values"][row], atol=1e-5)
    outputs = predictor.ensemble_outputs(features)
    assert outputs.shape == (3, 1, 2) and np.isfinite(outputs).all()
