"""Beyond the paper, end to end on a tiny corpus: a network per source, EmoMucs on
the harmonic–percussive split, and the harmonic front ends (chroma, constant-Q)."""

from __future__ import annotations

import numpy as np
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from emomucs.audio import AudioSet
from emomucs.pipelines.experiments import variant_namespaces
from emomucs.pipelines.experiments.pipeline import create_pipelines, with_upstream
from emomucs.pipelines.experiments.variants import (
    harmonic_variants,
    hpss_variants,
    source_specific_variants,
)
from emomucs.pipelines.features.nodes import compute_chroma, compute_constant_q
from emomucs.pipelines.reporting import create_reporting_pipeline
from tests.pipelines.test_experiments import KeptDataset, _config, _param_inputs
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


def test_emomucs_runs_on_the_harmonic_percussive_split():
    table, mix, stems = make_corpus(n_tracks=12, seconds=2.0, seed=5)
    catalog = _run(with_upstream(hpss_variants()), table, mix, stems)
    split = catalog.load("hpss.stems")
    assert tuple(split.sources) == ("drums", "harmonic")
    assert split.attrs["separator"].startswith("callable:emomucs.separation.hpss:")
    first = table["musicId"].iloc[0]
    assert np.allclose(split.audio[first].sum(axis=0), mix.audio[first], atol=1e-4)
    features = catalog.load("hpss.stems_log_mel")
    assert tuple(features["values"].shape[:3]) == (12, 2, 40)
    namespace = "emomucs_hpss.c1d_late_full"
    _assert_trained_with_contributions(catalog, namespace, table, ("drums", "harmonic"))
    summary = catalog.load(f"{namespace}.cv_summary")
    assert summary["inputs"]["audio"] == split.attrs["separator"]


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


@pytest.mark.parametrize("representation", ["chroma"])
def test_a_variant_trains_on_a_harmonic_front_end(representation):
    table, mix, stems = make_corpus(n_tracks=12, seconds=2.0, seed=5)
    ours = [v for v in harmonic_variants() if v.representation == representation]
    catalog = _run(with_upstream(ours), table, mix, stems)
    emomucs = f"harmonic.c1d_{representation}_late_full"
    _assert_trained_with_contributions(catalog, emomucs, table, stems.sources)
    summary = catalog.load(f"{emomucs}.cv_summary")
    assert summary["inputs"]["representation"] == representation
    # compared with C1D-M on the same features, not on log-mel
    differences = catalog.load("results_differences").set_index("variant")
    assert differences.loc[emomucs, "baseline"] == f"harmonic.c1d_{representation}"
    assert differences.loc[emomucs, "status"] == "ok"
