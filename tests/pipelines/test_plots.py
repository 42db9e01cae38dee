"""Plots on the outputs of a real tiny experiment run in memory.

Four variants (the C1D mix baseline, two single-source C1Ds and their frozen late
fusion) train for two epochs on 12 synthetic 2 s tracks; the reporting and plots
pipelines then draw from what they wrote.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from matplotlib.figure import Figure

from emomucs import SOURCES
from emomucs.config_loader import ConfigLoader
from emomucs.pipelines import plots, reporting
from emomucs.pipelines.experiments.pipeline import (
    contribution_namespaces,
    with_upstream,
)
from emomucs.pipelines.experiments.variants import (
    baseline_variants,
    combination_variants,
)
from emomucs.pipelines.plots.nodes import (
    plot_attention_weights,
    plot_emotion_plane,
    plot_predictions,
    plot_results_heatmap,
    plot_separation_sdr,
    plot_source_learning_curves,
)
from emomucs.separation.sdr import summarize_sdr
from tests.training.synthetic import make_corpus

PROJECT = Path(__file__).resolve().parents[2]
TINY = {
    "cv": {"outer_folds": 3, "inner_folds": 2, "seed": 0},
    "training": {
        "learning_rate": 0.005,
        "betas": [0.9, 0.999],
        "batch_size": 8,
        "eval_batch_size": 8,
        "max_epochs": 2,
        "patience": 1,
        "seed": 0,
        "standardise": False,
        "cache_dir": None,
        "num_threads": 1,
        "progress": False,
    },
}


class KeptDataset(MemoryDataset):
    """Memory the runner does not release, so the test can read every output."""

    def _release(self) -> None:
        pass


def _feed_params(catalog: DataCatalog, params: dict, prefix: str = "params:") -> None:
    """``params:a``, ``params:a.b`` … as Kedro's context adds them."""
    for key, value in params.items():
        catalog[f"{prefix}{key}"] = MemoryDataset(value, copy_mode="assign")
        if isinstance(value, dict):
            _feed_params(catalog, value, f"{prefix}{key}.")


@pytest.fixture(scope="module")
def run():
    """Every output of the tiny run, by dataset name."""
    params = dict(
        ConfigLoader(str(PROJECT / "conf"), base_env="base", default_run_env="base")[
            "parameters"
        ]
    )
    params.update(TINY)
    variants = baseline_variants()[:1] + combination_variants(
        [("vocals", "drums")], slugs=("c1d",)
    )
    experiments = with_upstream(variants)
    namespaces = sorted(
        o[: -len(".cv_summary")]
        for o in experiments.all_outputs()
        if o.endswith(".cv_summary")
    )
    contributions = contribution_namespaces(experiments)
    pipe = (
        experiments
        + reporting.create_reporting_pipeline(namespaces, contributions)
        + plots.create_experiment_plots_pipeline(namespaces, contributions)
        + plots.create_corpus_plots_pipeline()
    )
    table, mix, stems = make_corpus(n_tracks=12, seconds=2.0, seed=5)
    catalog = DataCatalog(
        {
            "track_table": MemoryDataset(table),
            "mix": MemoryDataset(mix, copy_mode="assign"),
            "stems": MemoryDataset(stems, copy_mode="assign"),
            "cv_summaries": MemoryDataset({}),
            "contribution_summaries": MemoryDataset({}),
            "reference_summaries": MemoryDataset({}),
            "corpus_contributions": MemoryDataset({}),
        }
    )
    _feed_params(catalog, params)
    for name in pipe.all_outputs():
        catalog[name] = KeptDataset(copy_mode="assign")
    SequentialRunner().run(pipe, catalog)
    outputs = {name: catalog.load(name) for name in pipe.all_outputs()}
    outputs["track_table"] = table
    outputs["namespaces"] = namespaces
    return outputs


def _scatter_points(ax) -> int:
    return sum(len(c.get_offsets()) for c in ax.collections)


def test_every_variant_gets_a_prediction_scatter(run):
    assert run["namespaces"] == [
        "baselines.c1d",
        "combinations.c1d_vocals_drums",
        "sources.c1d_drums",
        "sources.c1d_vocals",
    ]
    for namespace in run["namespaces"]:
        fig = run[f"{namespace}.prediction_scatter"]
        assert isinstance(fig, Figure)
        summary = run[f"{namespace}.cv_summary"]
        valence, arousal = fig.axes[:2]
        # every out-of-fold prediction is drawn once per dimension
        assert _scatter_points(valence) == _scatter_points(arousal) == 12
        assert summary["label"] in fig.get_suptitle()
        mean = summary["metrics"]["mean"]["rmse_valence"]
        assert f"RMSE {mean:.3f}" in valence.get_title()


def test_scatter_points_are_the_predictions(run):
    predictions = run["baselines.c1d.cv_predictions"]
    fig = run["baselines.c1d.prediction_scatter"]
    drawn = np.concatenate([c.get_offsets() for c in fig.axes[1].collections])
    expected = predictions[["arousal", "arousal_pred"]].to_numpy(dtype=float)

    def rows(points):
        points = np.asarray(points, dtype=float)
        return points[np.lexsort(points.T[::-1])]

    assert drawn.shape == expected.shape
    assert np.allclose(rows(drawn), rows(expected), atol=1e-6)


def test_heatmap_has_a_row_per_variant(run):
    fig = run["results_heatmap"]
    ax = fig.axes[0]
    image = ax.images[0].get_array()
    assert image.shape[:2] == (4, 4)
    table = run["results_table"].sort_values("variant")
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [
        v if v == lab else f"{v}  ({lab})"
        for v, lab in zip(table["variant"], table["label"])
    ]
    assert sorted(table["label"]) == sorted(
        run[f"{n}.cv_summary"]["label"] for n in run["namespaces"]
    )
    texts = {t.get_text() for t in ax.texts}
    row = table.set_index("label").loc["C1D (drums)"]
    assert f"{row['r2_arousal_mean']:.3f} ± {row['r2_arousal_sd']:.3f}" in texts


def test_heatmap_colours_rank_each_column_best_green():
    table = pd.DataFrame(
        {
            "variant": ["a.x", "a.y"],
            "label": ["X", "Y"],
            **{f"rmse_{d}_mean": [0.2, 0.3] for d in ("valence", "arousal")},
            **{f"r2_{d}_mean": [0.1, 0.5] for d in ("valence", "arousal")},
            **{
                f"{m}_{d}_sd": [0.01, 0.02]
                for m in ("rmse", "r2")
                for d in ("valence", "arousal")
            },
        }
    )
    fig = plot_results_heatmap(table, {"colormap": "RdYlGn"})
    rgba = fig.axes[0].images[0].get_array()
    green = rgba[..., 1] - rgba[..., 0]
    # x has the lower RMSE (better, greener), y the higher R² (better, greener)
    assert green[0, 0] > green[1, 0] and green[1, 2] > green[0, 2]


def test_learning_curves_have_a_panel_per_single_source_model(run):
    fig = run["source_learning_curves"]
    titled = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert sorted(titled) == ["C1D · drums (6 splits)", "C1D · vocals (6 splits)"]
    log = run["sources.c1d_drums.training_log"]
    drums = next(ax for ax in fig.axes if ax.get_title().startswith("C1D · drums"))
    # one thin line and one best-epoch dot per split, then the two medians
    assert (
        len(drums.lines) == 2 * log.groupby(["outer_fold", "inner_split"]).ngroups + 2
    )


def test_learning_curves_reject_unknown_sources():
    with pytest.raises(ValueError, match="c1d_piano"):
        plot_source_learning_curves({}, c1d_piano=pd.DataFrame())


def test_emotion_plane_draws_every_track(run):
    fig = run["emotion_plane"]
    plane = fig.axes[0]
    assert _scatter_points(plane) == 12
    assert "12 tracks" in fig.axes[1].get_title()


def test_emotion_plane_names_a_track_outside_the_range():
    table = pd.DataFrame(
        {"musicId": [5, 634], "valence": [0.1, 1.4], "arousal": [0.0, 0.2]}
    )
    with pytest.raises(ValueError, match="track 634"):
        plot_emotion_plane(table, {})


def test_sdr_bars_per_source():
    rng = np.random.default_rng(0)
    model = {t: rng.normal(6, 1, len(SOURCES)) for t in range(5)}
    floor = {t: rng.normal(-5, 1, len(SOURCES)) for t in range(5)}
    summary = {
        "available": True,
        **summarize_sdr(model, floor, SOURCES),
        "separator": "local:x",
    }
    fig = plot_separation_sdr(summary, {})
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    expected = [summary["sources"][s]["model_db"] for s in SOURCES] + [
        summary["sources"][s]["floor_db"] for s in SOURCES
    ]
    assert np.allclose(heights, expected)
    assert [t.get_text() for t in ax.get_xticklabels()] == list(SOURCES)
    assert "local:x" in ax.get_title()


def test_sdr_without_true_stems_says_why():
    fig = plot_separation_sdr({"available": False, "reason": "no true stems"}, {})
    assert any("no true stems" in t.get_text() for t in fig.axes[0].texts)


def test_prediction_scatter_names_missing_columns(run):
    summary = run["baselines.c1d.cv_summary"]
    with pytest.raises(
        ValueError, match=r"C1D-M: cv_predictions lacks columns \['arousal_pred'\]"
    ):
        plot_predictions(
            run["baselines.c1d.cv_predictions"].drop(columns="arousal_pred"),
            summary,
            {},
        )


def _bar_heights(ax) -> list[float]:
    return [patch.get_height() for patch in ax.patches]


def test_contributions_have_a_panel_per_method_and_an_overview(run):
    variant = "combinations.c1d_vocals_drums"
    table = run[f"{variant}.contributions"]
    fig = run[f"{variant}.contributions_plot"]
    assert [ax.get_title() for ax in fig.axes] == ["silence", "mean", "shapley"]
    pooled = table[(table["scope"] == "pooled") & (table["repeat"] == -1)]
    for ax in fig.axes:
        rows = pooled[pooled["method"] == ax.get_title()].set_index(
            ["dimension", "source"]
        )
        # valence bars, then arousal bars, sources in SOURCES order
        expected = [
            rows.loc[(dim, source), "r2_drop"]
            for dim in ("valence", "arousal")
            for source in ("drums", "vocals")
        ]
        assert np.allclose(_bar_heights(ax), expected)
    overview = run["contributions_overview"]
    label = run[f"{variant}.cv_summary"]["label"]
    assert [ax.get_title() for ax in overview.axes] == [label]
    means = pooled[pooled["method"] == "mean"].set_index(["dimension", "source"])
    assert np.allclose(
        _bar_heights(overview.axes[0]),
        [
            means.loc[(d, s), "r2_drop"]
            for d in ("valence", "arousal")
            for s in ("drums", "vocals")
        ],
    )
    markdown = run["results_markdown"]
    section = markdown[markdown.index("## Source contributions") :]
    assert section.index("## Published") > 0  # the paper's numbers stay last
    assert f"| {label} | truth | valence |" in section


def test_plots_pipeline_wiring():
    pipe = plots.create_experiment_plots_pipeline(
        ["emomucs_late.c1d_freeze", "sources.c1d_bass"]
    )
    assert {
        "emomucs_late.c1d_freeze.plot_predictions",
        "sources.c1d_bass.plot_predictions",
        "plot_results_heatmap",
        "plot_source_learning_curves",
    } == {n.name for n in pipe.nodes}
    assert "sources.c1d_bass.training_log" in pipe.inputs()
    # attention variants also draw their weights
    attention = plots.create_variant_plots_pipeline(["emomucs_attention.c2d_full"])
    assert {n.name for n in attention.nodes} == {
        "emomucs_attention.c2d_full.plot_predictions",
        "emomucs_attention.c2d_full.plot_attention_weights",
    }
    assert "emomucs_attention.c2d_full.attention_weights_plot" in attention.outputs()
    # without single-source variants there is nothing to draw learning curves of
    assert (
        "source_learning_curves"
        not in plots.create_experiment_plots_pipeline(["baselines.c1d"]).all_outputs()
    )


def test_attention_weights_plot_shows_each_sources_mean_weight():
    rng = np.random.default_rng(0)
    n = 12
    predictions = pd.DataFrame({"musicId": range(n), "outer_fold": np.arange(n) % 3})
    expected = {}
    for dim in ("valence", "arousal"):
        raw = rng.uniform(0.1, 1, size=(n, len(SOURCES)))
        raw /= raw.sum(axis=1, keepdims=True)
        for i, source in enumerate(SOURCES):
            predictions[f"attention_{dim}_{source}"] = raw[:, i]
        expected[dim] = raw.mean(axis=0)
    summary = {
        "label": "EmoMucs-C1D attention full",
        "experiment": {"sources": list(SOURCES)},
    }
    fig = plot_attention_weights(predictions, summary, {})
    assert isinstance(fig, Figure)
    for ax, dim in zip(fig.axes[:2], ("valence", "arousal"), strict=True):
        heights = [bar.get_height() for bar in ax.patches]
        assert np.allclose(heights, expected[dim])
        assert [t.get_text() for t in ax.get_xticklabels()] == list(SOURCES)
    with pytest.raises(ValueError, match="lacks attention weights"):
        plot_attention_weights(
            predictions.drop(columns="attention_arousal_bass"), summary, {}
        )
