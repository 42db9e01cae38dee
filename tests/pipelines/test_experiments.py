"""The experiment template, its instantiations, their parameters and catalog entries."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from emomucs.config_loader import ConfigLoader
from emomucs.fingerprints import corpus_fingerprint
from emomucs.models.registry import MODEL_REGISTRY
from emomucs.pipelines.experiments import (
    contribution_namespaces,
    create_emomucs_pipeline,
    create_pipeline,
    create_pipelines,
    variant_namespaces,
)
from emomucs.pipelines.experiments.nodes import check_pretrained_settings
from emomucs.pipelines.experiments.pipeline import create_baselines_pipeline
from emomucs.pipelines.experiments.variants import (
    all_variants,
    baseline_variants,
    emomucs_variants,
)
from emomucs.pipelines.reporting import create_reporting_pipeline
from emomucs.settings import CONFIG_LOADER_ARGS
from emomucs.training import ExperimentSpec, attention_column
from emomucs.training.data import describe_inputs
from emomucs.training.metrics import DIMENSIONS
from tests.training.synthetic import make_corpus

CONF = Path(__file__).resolve().parents[2] / "conf"
ALL_VARIANTS = all_variants()


class KeptDataset(MemoryDataset):
    """A MemoryDataset the runner cannot release, to inspect intermediate outputs."""

    def _release(self) -> None:
        pass


def _config(env: str, key: str, runtime_params: dict | None = None) -> dict:
    """The config as the project's own loader (class and settings) reads it."""
    return ConfigLoader(
        str(CONF),
        **{**CONFIG_LOADER_ARGS, "default_run_env": env},
        runtime_params=runtime_params,
    )[key]


def _param_inputs(params: dict, prefix: str = "params:") -> dict:
    """``params:a``, ``params:a.b``, … as Kedro exposes nested parameters."""
    flat = {}
    for key, value in params.items():
        flat[prefix + key] = value
        if isinstance(value, dict):
            flat.update(_param_inputs(value, f"{prefix}{key}."))
    return flat


@pytest.mark.parametrize("env", ["local", "paper"])
def test_every_namespace_has_parameters_that_match_its_wiring(env):
    params = _config(env, "parameters")
    namespaces = variant_namespaces(create_pipeline())
    assert sorted(v.namespace for v in ALL_VARIANTS) == namespaces
    for variant in ALL_VARIANTS:
        group, name = variant.namespace.split(".")
        spec = ExperimentSpec.from_params(
            params[group][name]["experiment"], params["networks"]
        )
        assert spec.network == variant.network, variant.namespace
        assert spec.sources == variant.sources, variant.namespace
        assert spec.strategy == variant.strategy, variant.namespace
        assert spec.fusion == variant.fusion, variant.namespace
        assert (spec.model == "EmoMucs") == (variant.fusion is not None)
        assert spec.model_kwargs.get("hidden_layer", False) == (
            variant.slug == "c2d_hidden"
        ), variant.namespace


def test_a_variants_settings_in_conf_merge_over_the_grids():
    """The grid declares each variant once; a setting in conf (here --params) is
    merged over the generated ones key by key."""
    changed = {"emomucs_mid": {"c2d_hidden_freeze": {"experiment": {
        "fusion_dropout": 0.5, "model_kwargs": {"hidden_units": 16}
    }}}}  # fmt: skip
    params = _config("local", "parameters", runtime_params=changed)
    experiment = params["emomucs_mid"]["c2d_hidden_freeze"]["experiment"]
    assert experiment["fusion_dropout"] == 0.5
    assert experiment["model_kwargs"] == {"hidden_layer": True, "hidden_units": 16}
    assert experiment["strategy"] == "freeze" and experiment["fusion"] == "mid"
    unchanged = _config("local", "parameters")["emomucs_mid"]["c2d_hidden_full"]
    assert (
        unchanged["experiment"]
        == params["emomucs_mid"]["c2d_hidden_full"]["experiment"]
    )
    assert "fusion_dropout" not in unchanged["experiment"]


def test_paper_environment_has_the_papers_settings():
    paper = _config("paper", "parameters")
    assert paper["cv"]["outer_folds"] == paper["cv"]["inner_folds"] == 5
    assert paper["training"]["max_epochs"] == 10000
    assert paper["training"]["patience"] == 15
    assert paper["training"]["learning_rate"] == 0.005
    assert paper["training"]["batch_size"] == 64
    assert paper["training"]["loss_reduction"] == "sum"
    assert paper["training"]["weight_decay"] == 0
    assert paper["training"]["standardise"] is False
    # The paper's architectures: only constructor defaults, C1D flattened (base
    # averages over time), C2D with 32 filters (base 8).
    for name, kwargs in paper["networks"].items():
        defaults = inspect.signature(MODEL_REGISTRY[name]).parameters
        assert all(defaults[k].default == v for k, v in kwargs.items()), name
    assert paper["networks"]["C1D"]["pooling"] == "flatten"
    assert _config("local", "parameters")["networks"]["C1D"] == {"pooling": "mean"}
    assert paper["features"]["log_mel"] == {
        "n_mels": 40,
        "n_fft": 1024,
        "hop_length": 512,
        "top_db": 80.0,
    }


@pytest.mark.parametrize("env", ["paper", "benchmark"])
def test_runtime_params_override_one_key_under_any_environment(env):
    """``--params separation.separator.kind=oracle`` under an environment that has
    no ``separation`` block keeps base's other separation settings."""
    base = _config(env, "parameters")
    changed = _config(
        env, "parameters", runtime_params={"separation": {"separator": {"kind": "x"}}}
    )
    assert changed["separation"]["separator"]["kind"] == "x"
    expected = dict(base["separation"])
    expected["separator"] = {**base["separation"]["separator"], "kind": "x"}
    assert changed["separation"] == expected


def test_catalog_serves_every_artifact_of_every_variant(tmp_path):
    catalog = DataCatalog.from_config(_config("local", "catalog"))
    pipe = create_pipeline() + create_reporting_pipeline()
    ours = [
        d
        for d in pipe.datasets()
        if not d.startswith("params:") and d not in ("track_table", "mix", "stems")
    ]
    for name in ours:
        assert name in catalog, name
    models = catalog.get("emomucs_late.c1d_freeze.cv_models")
    assert type(models).__name__ == "TorchDataset"
    assert "data/06_models/emomucs_late.c1d_freeze/cv_models.pt" in str(
        models._describe()["filepath"]
    )


def test_pipelines_share_upstream_nodes_and_name_their_variants():
    pipelines = create_pipelines()
    late = pipelines["emomucs_late"]
    assert variant_namespaces(late) == sorted(
        [v.namespace for v in emomucs_variants("late")]
        + [f"sources.{n}_{s}" for n in ("c1d", "c2d") for s in SOURCES_ORDER]
    )
    # Shared nodes appear once, so every registered pipeline adds up.
    combined = sum(pipelines.values(), create_reporting_pipeline())
    assert len({n.name for n in combined.nodes}) == len(combined.nodes)
    assert sum(n.name == "assign_cv_folds" for n in combined.nodes) == 1
    assert "stems_waveform" not in late.all_outputs()
    assert "sources.c1d_vocals.cv_models" in late.all_outputs()


SOURCES_ORDER = ("drums", "bass", "other", "vocals")


@pytest.mark.parametrize("fusion", ["late", "attention"])
def test_tiny_emomucs_run_end_to_end(fusion):
    """The registered ``emomucs_<fusion>`` + results table on 12 tracks of 2 s."""
    table, mix, stems = make_corpus(n_tracks=12, seconds=2.0, seed=5)
    params = _config("local", "parameters")
    params["training"] = {
        **params["training"],
        "max_epochs": 2,
        "patience": 1,
        "repeats": 2,
        "cache_dir": None,
        "progress": False,
    }
    pipe = create_emomucs_pipeline(fusion)
    pipe += create_reporting_pipeline(variant_namespaces(pipe))
    data = {"track_table": table, "mix": mix, "stems": stems, "cv_summaries": {}}
    data.update({"reference_summaries": {}, "corpus_contributions": {}})
    data.update(_param_inputs(params))
    outputs = {d: KeptDataset() for d in pipe.all_outputs()}
    catalog = DataCatalog({**{k: MemoryDataset(v) for k, v in data.items()}, **outputs})
    SequentialRunner().run(pipe, catalog)

    folds = catalog.load("cv_folds")
    assert folds["outer_fold"].nunique() == params["cv"]["outer_folds"]
    group = f"emomucs_{fusion}"
    predictions = catalog.load(f"{group}.c2d_freeze.cv_predictions")
    # One row per repeat and track; freeze started from each repeat's own models.
    assert sorted(predictions["musicId"]) == sorted(table["musicId"].tolist() * 2)
    assert sorted(predictions["repeat"].unique()) == [0, 1]
    weights = [c for c in predictions if c.startswith("attention_")]
    if fusion == "attention":
        assert weights == [
            attention_column(d, s) for d in DIMENSIONS for s in SOURCES_ORDER
        ]
        for d in DIMENSIONS:
            per_track = predictions[[attention_column(d, s) for s in SOURCES_ORDER]]
            assert np.allclose(per_track.sum(axis=1), 1.0, atol=1e-5)
    else:
        assert not weights
    metrics = catalog.load(f"{group}.c1d_full.cv_metrics")
    assert list(metrics["scope"]) == ["fold"] * 6 + ["repeat"] * 2 + [
        "mean",
        "sd",
        "pooled",
        "pooled_sd",
    ]
    assert catalog.load(f"{group}.c1d_full.cv_summary")["n_tracks"] == 12
    results = catalog.load("results_table")
    assert len(results) == len(variant_namespaces(pipe)) == 14
    markdown = catalog.load("results_markdown")
    assert "| EmoMucs-C2D | freeze |" in markdown
    assert (
        "| model | strategy | mix | early | mid | late | attention |" in markdown
    ) == (fusion == "attention")
    label = f"EmoMucs-C2D {fusion} freeze"
    assert f"| {group}.c2d_freeze | {label} | truth |" in markdown
    assert "0.2320" in markdown  # the paper's C2D late freeze RMSE valence
    # Same folds everywhere: every summary names one fold assignment.
    assert results["folds"].nunique() == 1
    # ... and the same settings: no row departs from the others
    assert (results["differs"] == "").all()
    assert results["fingerprint"].nunique() == len(results)  # one per variant
    # Each row names where its audio came from: the stems' separator or the mix.
    assert set(results["audio"]) == {"truth"}
    summary = catalog.load(f"{group}.c1d_full.cv_summary")
    assert summary["inputs"]["representation"] == "log_mel"
    assert summary["inputs"]["audio"] == "truth"
    _assert_settings_recorded(catalog, summary, table, params)
    differences = catalog.load("results_differences")
    # no mix baseline in this run: every EmoMucs row says so instead of a number
    assert set(differences["status"]) == {
        "no C1D-M run on this corpus",
        "no C2D-M run on this corpus",
    }
    assert isinstance(catalog.load(f"{group}.c1d_freeze.training_log"), pd.DataFrame)
    _assert_contributions(catalog, pipe, fusion, params)


def _assert_contributions(catalog, pipe, fusion, params):
    """Multi-source variants get their sources' contributions; single sources none."""
    group = f"emomucs_{fusion}"
    assert contribution_namespaces(pipe) == sorted(
        v.namespace for v in emomucs_variants(fusion)
    )
    contributions = catalog.load(f"{group}.c2d_freeze.contributions")
    pooled = contributions[
        (contributions["scope"] == "pooled") & (contributions["repeat"] == -1)
    ]
    methods = {"silence", "mean", "shapley"} | (
        {"attention"} if fusion == "attention" else set()
    )
    assert set(pooled["method"]) == methods
    assert len(pooled) == len(methods) * 4 * 2  # methods × sources × dimensions
    summary = catalog.load(f"{group}.c2d_freeze.contribution_summary")
    assert summary["label"] == f"EmoMucs-C2D {fusion} freeze"
    assert summary["n_repeats"] == params["training"]["repeats"]
    assert len(summary["pooled"]) == len(pooled)


def test_tiny_early_mid_and_baselines_run_end_to_end():
    """``emomucs_early``, ``emomucs_mid`` and ``baselines`` as registered, in one
    run with the results table, on 12 tracks of 2 s: every variant predicts every
    track once, the table lays them out in the paper's columns, and each EmoMucs row
    is compared with its mix baseline of the same run."""
    table, mix, stems = make_corpus(n_tracks=12, seconds=2.0, seed=5)
    params = _config("local", "parameters")
    params["training"] = {
        **params["training"],
        "max_epochs": 2,
        "patience": 1,
        "repeats": 1,
        "cache_dir": None,
        "progress": False,
    }
    pipe = (
        create_emomucs_pipeline("early")
        + create_emomucs_pipeline("mid")
        + create_baselines_pipeline()
    )
    variants = variant_namespaces(pipe)
    pipe += create_reporting_pipeline(variants)
    data = {"track_table": table, "mix": mix, "stems": stems, "cv_summaries": {}}
    data.update({"reference_summaries": {}, "corpus_contributions": {}})
    data.update(_param_inputs(params))
    outputs = {d: KeptDataset() for d in pipe.all_outputs()}
    catalog = DataCatalog({**{k: MemoryDataset(v) for k, v in data.items()}, **outputs})
    SequentialRunner().run(pipe, catalog)

    expected = {
        v.namespace
        for v in [
            *baseline_variants(),
            *emomucs_variants("early"),
            *emomucs_variants("mid"),
        ]
    }
    assert expected <= set(variants)
    # mid fusion starts from the C2D with a hidden layer, early from the plain one
    assert "sources.c2d_hidden_vocals" in variants and "sources.c2d_vocals" in variants
    for namespace in variants:
        predictions = catalog.load(f"{namespace}.cv_predictions")
        assert sorted(predictions["musicId"]) == sorted(table["musicId"]), namespace
        assert np.isfinite(predictions[["valence_pred", "arousal_pred"]]).all().all()
    assert (
        catalog.load("baselines.wavec1d.cv_summary")["inputs"]["representation"]
        == "waveform"
    )
    assert catalog.load("baselines.c1d.cv_summary")["inputs"]["audio"] == "mix"
    results = catalog.load("results_table")
    assert len(results) == len(variants) == 27
    markdown = catalog.load("results_markdown")
    assert "| model | strategy | mix | early | mid | late |" in markdown
    for row in ("| C1D-M | – | ", "| C2D-M | – | ", "| WaveC1D-M | – | "):
        assert row in markdown
    assert "| emomucs_mid.c2d_hidden_freeze | EmoMucs-C2D mid freeze" in markdown
    differences = catalog.load("results_differences").set_index("variant")
    assert set(differences["status"]) == {"ok"}  # every baseline ran here
    for namespace in expected - {v.namespace for v in baseline_variants()}:
        network = "c2d" if "c2d" in namespace else "c1d"
        assert differences.loc[namespace, "baseline"] == f"baselines.{network}"
        assert np.isfinite(differences.loc[namespace, "r2_valence_diff"])


def _assert_settings_recorded(catalog, summary, table, params):
    """Every setting that changes a score, and the key the results store files the
    summary by."""
    settings = summary["settings"]
    assert settings["corpus"] == {
        "fingerprint": corpus_fingerprint(table),
        "n_tracks": 12,
    }
    assert settings["features"]["n_mels"] == params["features"]["log_mel"]["n_mels"]
    assert settings["training"]["learning_rate"] == params["training"]["learning_rate"]
    assert "cache_dir" not in settings["training"]
    assert settings["network"] == {"C1D": params["networks"]["C1D"]}
    assert summary["key"] == f"truth__{corpus_fingerprint(table)}"
    baseline = catalog.load("sources.c1d_vocals.cv_summary")
    assert baseline["settings"]["code"] == settings["code"]
    assert baseline["fingerprint"] != summary["fingerprint"]


def test_finetune_and_freeze_refuse_models_trained_with_other_settings():
    features = {
        "representation": "log_mel",
        "sources": list(SOURCES_ORDER),
        "music_ids": None,
        "values": torch.zeros(2, 4, 40, 10),
        "sample_rate": 22050,
        "settings": {
            "n_mels": 40,
            "hop_length": 512,
            "audio_attrs": {"separator": "x"},
        },
    }
    recorded = {
        "label": "C1D (vocals)",
        "inputs": describe_inputs(features),
        "training": {"standardise": True},
    }
    training = {"standardise": True, "learning_rate": 0.1}
    check_pretrained_settings("v", features, training, {"vocals": recorded})
    with pytest.raises(ValueError, match="'vocals' models .* other standardise"):
        check_pretrained_settings(
            "v", features, {"standardise": False}, {"vocals": recorded}
        )
    other = {
        **features,
        "settings": {**features["settings"], "hop_length": 256},
    }
    with pytest.raises(ValueError, match="other features .*hop_length"):
        check_pretrained_settings("v", other, training, {"vocals": recorded})
    oracle = {**features, "settings": {**features["settings"], "audio_attrs": {}}}
    with pytest.raises(ValueError, match="other audio"):
        check_pretrained_settings("v", oracle, training, {"vocals": recorded})
    older = {k: v for k, v in recorded.items() if k != "training"}
    with pytest.raises(ValueError, match="do not record .* rerun them"):
        check_pretrained_settings("v", features, training, {"vocals": older})
