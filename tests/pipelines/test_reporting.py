"""Reporting: the results table of whichever variants ran, their spread over
repeats, paired differences from the mix baselines, and tables that cannot mix
runs of other corpora or settings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from scipy import stats
from sklearn.metrics import mean_squared_error

from emomucs import SOURCES
from emomucs.datasets import ResultsStoreDataset, SummaryDataset
from emomucs.fingerprints import corpus_fingerprint
from emomucs.pipelines.experiments.nodes import evaluate_predictions
from emomucs.pipelines.reporting import create_pipeline, create_reporting_pipeline
from emomucs.pipelines.reporting.nodes import (
    PAPER_RESULTS,
    add_contributions_section,
    tabulate_results,
)
from emomucs.training import assign_folds
from emomucs.training.folds import fingerprint_folds

FEATURES = {"sample_rate": 22050, "n_mels": 40, "n_frames": 87, "hop_length": 512}
TRAINING = {"learning_rate": 0.005, "standardise": True, "seed": 1}
NETWORKS = {"C1D": {}, "C2D": {"n_filters": 8}}
C1D_M = {"model": "C1D", "sources": ["mix"]}
C2D_M = {"model": "C2D", "sources": ["mix"]}


def emomucs(network="C1D", fusion="late", strategy="freeze", sources=SOURCES):
    return {
        "model": "EmoMucs",
        "source_model": network,
        "sources": list(sources),
        "fusion": fusion,
        "strategy": strategy,
    }


class Corpus:
    """Tracks with labels, shared folds, and predictions built by hand."""

    def __init__(self, n_tracks: int = 30, seed: int = 0, outer: int = 3):
        rng = np.random.default_rng(seed)
        self.table = pd.DataFrame(
            {
                "musicId": np.arange(100, 100 + n_tracks),
                "valence": rng.uniform(-1, 1, n_tracks),
                "arousal": rng.uniform(-1, 1, n_tracks),
            }
        )
        self.folds = assign_folds(self.table["musicId"], outer, 2, seed)
        tests = self.folds[self.folds["inner_fold"] == -1]
        self.test = tests[["musicId", "outer_fold"]].merge(self.table)

    def predictions(self, repeats: int = 2, noise: float = 0.3, seed: int = 1):
        """Truth plus seeded noise, one block of rows per repeat."""
        parts = []
        for repeat in range(repeats):
            rng = np.random.default_rng([seed, repeat])
            part = self.test.copy()
            for dim in ("valence", "arousal"):
                part[f"{dim}_pred"] = part[dim] + rng.normal(0, noise, len(part))
            parts.append(part.assign(repeat=repeat))
        return pd.concat(parts, ignore_index=True)

    def summary(
        self,
        experiment,
        predictions,
        audio=None,
        networks=NETWORKS,
        training=TRAINING,
        features=FEATURES,
    ):
        """What ``evaluate_predictions`` stores for these predictions."""
        audio = audio or ("mix" if experiment["sources"] == ["mix"] else "oracle")
        models = {
            "inputs": {
                "representation": "log_mel",
                "audio": audio,
                "features": features,
            },
            "training": training,
        }
        _, summary = evaluate_predictions(
            predictions, self.folds, models, self.table, experiment, networks
        )
        return summary


def scaled_residuals(predictions: pd.DataFrame, factor: float) -> pd.DataFrame:
    """The same predictions with every residual multiplied by ``factor``."""
    scaled = predictions.copy()
    for dim in ("valence", "arousal"):
        residual = predictions[f"{dim}_pred"] - predictions[dim]
        scaled[f"{dim}_pred"] = predictions[dim] + factor * residual
    return scaled


def _stored(*entries) -> dict:
    """A results store: ``<variant>/<key>`` -> summary."""
    return {f"{variant}/{summary['key']}": summary for variant, summary in entries}


@pytest.fixture(scope="module")
def corpus():
    return Corpus()


def test_paired_differences_match_a_hand_built_gap(corpus):
    """A variant whose residuals are half its baseline's: ΔRMSE per (repeat, fold)
    is −½ of the baseline's RMSE there, with the Nadeau–Bengio interval; a
    variant equal to its baseline differs by exactly 0 and is not significant."""
    base = corpus.predictions(repeats=2)
    stored = _stored(
        ("baselines.c1d", corpus.summary(C1D_M, base)),
        (
            "emomucs_late.c1d_freeze",
            corpus.summary(emomucs(), scaled_residuals(base, 0.5)),
        ),
        ("emomucs_late.c1d_full", corpus.summary(emomucs(strategy="full"), base)),
    )
    table, markdown, differences = tabulate_results(stored)
    row = differences.set_index("variant").loc["emomucs_late.c1d_freeze"]
    assert row["status"] == "ok" and row["baseline"] == "baselines.c1d"
    per_fold = [
        -0.5 * np.sqrt(mean_squared_error(part["valence"], part["valence_pred"]))
        for _, part in base.groupby(["repeat", "outer_fold"])
    ]
    n, mean, sd = len(per_fold), np.mean(per_fold), np.std(per_fold, ddof=1)
    assert row["n_pairs"] == n == 6
    assert row["rmse_valence_diff"] == pytest.approx(mean)
    ratio = 10 / 20  # 3 outer folds of 30 tracks: test 10, training part 20
    assert row["test_train_ratio"] == pytest.approx(ratio)
    half = stats.t.ppf(0.975, n - 1) * sd * np.sqrt(1 / n + ratio)
    assert row["rmse_valence_ci_low"] == pytest.approx(mean - half)
    assert row["rmse_valence_ci_high"] == pytest.approx(mean + half)
    naive = stats.t.ppf(0.975, n - 1) * sd * np.sqrt(1 / n)
    assert row["rmse_valence_ci_high_naive"] == pytest.approx(mean + naive)
    assert row["rmse_valence_significant"] and row["rmse_arousal_significant"]

    same = differences.set_index("variant").loc["emomucs_late.c1d_full"]
    assert same["rmse_valence_diff"] == 0 and same["r2_arousal_diff"] == 0
    assert not same[[f"{m}_significant" for m in ("rmse_valence", "r2_arousal")]].any()

    lines = markdown.splitlines()
    freeze = next(
        line for line in lines if line.startswith("| emomucs_late.c1d_freeze")
    )
    assert f"{mean:+.4f} [{mean - half:+.4f}, {mean + half:+.4f}] *" in freeze
    assert "RMSE V better" in freeze and "RMSE A better" in freeze
    full = next(
        line
        for line in lines
        if line.startswith("| emomucs_late.c1d_full") and "C1D-M" in line
    )
    assert full.endswith("| none |")
    assert "Nadeau and Bengio" in markdown


def test_no_difference_without_a_comparable_baseline(corpus):
    base = corpus.predictions(repeats=1)
    c2d_wide = {"C1D": {}, "C2D": {"n_filters": 32}}
    stored = _stored(
        ("baselines.c2d", corpus.summary(C2D_M, base)),
        (
            "emomucs_mid.c2d_freeze",
            corpus.summary(
                {**emomucs("C2D", "mid"), "model_kwargs": {"hidden_layer": True}}, base
            ),
        ),
        (
            "emomucs_late.c2d_freeze",
            corpus.summary(emomucs("C2D"), base, networks=c2d_wide),
        ),
        ("emomucs_late.c1d_freeze", corpus.summary(emomucs(), base)),
    )
    _, markdown, differences = tabulate_results(stored)
    status = differences.set_index("variant")["status"]
    # C2D with the hidden layer (mid fusion) is compared with the plain C2D-M
    assert status["emomucs_mid.c2d_freeze"] == "ok"
    assert status["emomucs_late.c2d_freeze"] == "C2D-M differs: network"
    assert status["emomucs_late.c1d_freeze"] == "no C1D-M run on this corpus"
    line = next(
        x for x in markdown.splitlines() if x.startswith("| emomucs_late.c1d_freeze")
    )
    assert line.count("no C1D-M run on this corpus") == 4


def test_repeats_give_the_spread_over_seeds_and_over_folds(corpus):
    predictions = corpus.predictions(repeats=2)
    summary = corpus.summary(C1D_M, predictions)
    pooled = [
        np.sqrt(mean_squared_error(part["arousal"], part["arousal_pred"]))
        for _, part in predictions.groupby("repeat")
    ]
    per_fold = [
        np.sqrt(mean_squared_error(part["arousal"], part["arousal_pred"]))
        for _, part in predictions.groupby(["repeat", "outer_fold"])
    ]
    assert summary["n_repeats"] == 2 and summary["n_tracks"] == 30
    assert len(summary["per_fold"]) == 6 and len(summary["per_repeat"]) == 2
    metrics = summary["metrics"]
    assert metrics["pooled"]["rmse_arousal"] == pytest.approx(np.mean(pooled))
    assert metrics["pooled_sd"]["rmse_arousal"] == pytest.approx(np.std(pooled, ddof=1))
    assert metrics["mean"]["rmse_arousal"] == pytest.approx(np.mean(per_fold))
    assert metrics["sd"]["rmse_arousal"] == pytest.approx(np.std(per_fold, ddof=1))

    table, markdown, _ = tabulate_results(_stored(("baselines.c1d", summary)))
    row = table.iloc[0]
    assert row["n_repeats"] == 2
    assert row["rmse_arousal_pooled_sd"] == pytest.approx(np.std(pooled, ddof=1))
    cell = f"{np.mean(pooled):.4f} ± {np.std(pooled, ddof=1):.4f}"
    assert cell in next(x for x in markdown.splitlines() if x.startswith("| baselines"))

    # no repeat column: one repeat, no spread over seeds
    single = corpus.summary(
        C1D_M, predictions[predictions["repeat"] == 0].drop(columns="repeat")
    )
    assert (
        single["n_repeats"] == 1
        and single["metrics"]["pooled_sd"]["r2_valence"] is None
    )


def test_runs_on_other_audio_are_kept_side_by_side(corpus, tmp_path):
    """An oracle run no longer overwrites the separator's rows of the same variant."""
    base = corpus.predictions(repeats=1)
    folder = tmp_path / "cv_summaries"
    store = SummaryDataset(folder=str(folder / "emomucs_late.c1d_freeze"))
    separated = corpus.summary(emomucs(), base, audio="local:compact:ab12")
    oracle = corpus.summary(emomucs(), scaled_residuals(base, 0.5), audio="oracle")
    store.save(separated)
    store.save(oracle)
    assert store.load() == oracle  # the newest
    SummaryDataset(folder=str(folder / "baselines.c1d")).save(
        corpus.summary(C1D_M, base)
    )
    stored = ResultsStoreDataset(
        path=str(folder), dataset="json.JSONDataset", filename_suffix=".json"
    ).load()
    assert sorted(stored) == [
        f"baselines.c1d/mix__{oracle['settings']['corpus']['fingerprint']}",
        f"emomucs_late.c1d_freeze/local-compact-ab12__{separated['key'].split('__')[1]}",
        f"emomucs_late.c1d_freeze/oracle__{oracle['key'].split('__')[1]}",
    ]
    table, markdown, differences = tabulate_results(stored)
    assert sorted(table["audio"]) == ["local:compact:ab12", "mix", "oracle"]
    assert "**Stems: `local:compact:ab12`**" in markdown
    assert "**Stems: `oracle`**" in markdown
    side = markdown[markdown.index("### Audio side by side") :].splitlines()
    row = table.set_index("audio")
    assert (
        f"| emomucs_late.c1d_freeze | {row.loc['local:compact:ab12', 'r2_valence_pooled']:.3f}"
        in "\n".join(side)
    )
    assert list(differences["status"]) == ["ok", "ok"]


def test_rows_whose_settings_differ_are_flagged(corpus):
    base = corpus.predictions(repeats=1)
    slow = {**TRAINING, "learning_rate": 0.001}
    stored = _stored(
        ("baselines.c1d", corpus.summary(C1D_M, base)),
        ("emomucs_late.c1d_full", corpus.summary(emomucs(strategy="full"), base)),
        ("emomucs_late.c1d_freeze", corpus.summary(emomucs(), base, training=slow)),
    )
    table, markdown, differences = tabulate_results(stored)
    differs = table.set_index("variant")["differs"]
    assert differs["emomucs_late.c1d_freeze"] == "training.learning_rate"
    assert differs["baselines.c1d"] == differs["emomucs_late.c1d_full"] == ""
    assert "| EmoMucs-C1D | freeze | – | – | – | " in markdown
    freeze = next(
        x for x in markdown.splitlines() if x.startswith("| EmoMucs-C1D | freeze")
    )
    assert freeze.endswith("† |")
    settings = markdown[markdown.index("### Settings that differ") :]
    assert (
        "`training.learning_rate` — `0.005`: baselines.c1d, emomucs_late.c1d_full;"
        in settings
    )
    assert "`0.001`: emomucs_late.c1d_freeze" in settings
    status = differences.set_index("variant")["status"]
    assert status["emomucs_late.c1d_freeze"] == "C1D-M differs: training"
    assert status["emomucs_late.c1d_full"] == "ok"


def test_another_corpus_gets_its_own_section_and_keeps_the_default_rows(
    corpus, tmp_path
):
    """Issue 15: a 4-track dataset's run no longer replaces the default corpus'
    rows without naming the dataset: summaries are keyed by corpus."""
    tiny = Corpus(n_tracks=4, seed=3, outer=2)
    store = SummaryDataset(folder=str(tmp_path / "baselines.c1d"))
    default = corpus.summary(C1D_M, corpus.predictions(repeats=1))
    small = tiny.summary(C1D_M, tiny.predictions(repeats=1))
    store.save(default)
    store.save(small)
    assert len(list((tmp_path / "baselines.c1d").glob("*.json"))) == 2
    stored = ResultsStoreDataset(
        path=str(tmp_path), dataset="json.JSONDataset", filename_suffix=".json"
    ).load()
    table, markdown, _ = tabulate_results(stored)
    assert sorted(table["n_tracks"]) == [4, 30]
    assert "**These results come from 2 corpora**" in markdown
    first = markdown.index(
        f"## Corpus `{default['settings']['corpus']['fingerprint']}`"
    )
    second = markdown.index(f"## Corpus `{small['settings']['corpus']['fingerprint']}`")
    assert first < second  # the larger corpus first
    assert "(30 tracks)" in markdown[first:second] and "(4 tracks)" in markdown[second:]


def test_older_unkeyed_summaries_are_set_apart(corpus):
    summary = corpus.summary(C1D_M, corpus.predictions(repeats=1))
    legacy = {
        k: v
        for k, v in summary.items()
        if k not in ("settings", "key", "per_fold", "per_repeat", "fingerprint")
    }
    stored = {"baselines.c2d": {**legacy, "label": "C2D-M", "experiment": C2D_M}}
    stored.update(_stored(("baselines.c1d", summary)))
    table, markdown, _ = tabulate_results(stored)
    assert set(table["corpus"]) == {summary["key"].split("__")[1], "unknown"}
    older = markdown[markdown.index("## Older summaries") :]
    assert "| baselines.c2d | C2D-M | mix |" in older
    assert "baselines.c1d" not in older


def test_a_fresh_summary_replaces_the_stored_one_of_its_variant_and_key(corpus):
    base = corpus.predictions(repeats=1)
    old = corpus.summary(C1D_M, base)
    new = corpus.summary(C1D_M, scaled_residuals(base, 0.5))
    table, _, _ = tabulate_results(
        _stored(("baselines.c1d", old)), **{"baselines.c1d": new}
    )
    assert len(table) == 1
    assert table.loc[0, "rmse_valence_pooled"] == pytest.approx(
        new["metrics"]["pooled"]["rmse_valence"]
    )


def test_published_numbers_sit_beside_ours():
    _, markdown, differences = tabulate_results({})
    assert "No variant has run yet." in markdown
    assert differences.empty
    published = markdown[markdown.index("## Published") :]
    assert "| EmoMucs-C2D | freeze | – | 0.2373 | – | 0.2320 |" in published
    assert "| C2D-M | – | 0.6100 | – | – | – |" in published  # R² arousal
    freeze = PAPER_RESULTS[PAPER_RESULTS["strategy"] == "freeze"]
    assert len(PAPER_RESULTS) == 7 and len(freeze) == 5


def test_pipeline_orders_the_table_after_the_variants_of_the_run(corpus):
    pipe = create_reporting_pipeline(["baselines.c1d"])
    node = next(n for n in pipe.nodes if n.name == "tabulate_results")
    assert node.inputs == [
        "cv_summaries",
        "reference_summaries",
        "baselines.c1d.cv_summary",
    ]
    summary = corpus.summary(C1D_M, corpus.predictions(repeats=1))
    catalog = DataCatalog(
        {
            "cv_summaries": MemoryDataset({}),
            "reference_summaries": MemoryDataset({}),
            "baselines.c1d.cv_summary": MemoryDataset(summary),
        }
    )
    outputs = SequentialRunner().run(pipe, catalog)
    assert set(outputs) == {
        "results_table",
        "results_markdown",
        "results_differences",
        "paper_results",
    }
    assert list(catalog.load("results_table")["variant"]) == ["baselines.c1d"]
    assert isinstance(catalog.load("paper_results"), pd.DataFrame)
    assert [
        n.inputs for n in create_pipeline().nodes if n.name == "tabulate_results"
    ] == [["cv_summaries", "reference_summaries"]]
    with_reference = create_reporting_pipeline(["baselines.c1d"], with_reference=True)
    node = next(n for n in with_reference.nodes if n.name == "tabulate_results")
    assert "reference_summary" in node.inputs  # built after this run's reference


def _reference(corpus, stems="oracle", folds=None, shift=0.0) -> dict:
    """A reference summary on the corpus: every input set at R² 0.5 + shift."""
    corpus_key = corpus_fingerprint(corpus.table)
    sets = ["mix", "stems", "stems_concatenated", *SOURCES]
    return {
        "stems": stems,
        "corpus": corpus_key,
        "folds": folds or fingerprint_folds(corpus.folds),
        "key": f"{stems}__{corpus_key}",
        "pooled_r2": {s: {"valence": 0.5 + shift, "arousal": 0.6} for s in sets},
        "ceiling": {
            "valence": {"r2_theoretical": 0.8, "r2_empirical": 0.7},
            "arousal": {"r2_theoretical": 0.9, "r2_empirical": 0.8},
        },
    }


def test_each_variant_sits_beside_the_reference_on_its_folds_and_audio(corpus):
    base = corpus.predictions(repeats=1)
    summaries = {
        "baselines.c1d": corpus.summary(C1D_M, base),
        "sources.c1d_drums": corpus.summary(
            {"model": "C1D", "sources": ["drums"]}, base
        ),
        "emomucs_late.c1d_freeze": corpus.summary(emomucs(), base),
        "combinations.c1d_drums_vocals": corpus.summary(
            emomucs(sources=["drums", "vocals"]), base
        ),
        "emomucs_late.c1d_full": corpus.summary(
            emomucs(strategy="full"), base, audio="local:compact:1234"
        ),
    }
    stored = _stored(*summaries.items())
    oracle = _reference(corpus, shift=0.1)
    other_folds = _reference(corpus, stems="local:compact:1234", folds="elsewhere")
    table, markdown, _ = tabulate_results(
        stored, {"a": oracle}, fresh_reference=other_folds
    )
    section = markdown[markdown.index("### Against the reference regressor") :]
    section = section[: section.index("\n### ", 1)]
    for variant, input_set in [
        ("baselines.c1d", "mix"),
        ("sources.c1d_drums", "drums"),
        ("emomucs_late.c1d_freeze", "stems"),
    ]:
        row = table.set_index("variant").loc[variant]
        own = (row["r2_valence_pooled"], row["r2_arousal_pooled"])
        expected = (
            f"| {own[0]:.3f} / {own[1]:.3f} | 0.600 / 0.600 (`{input_set}`) | "
            f"{own[0] - 0.6:+.3f} / {own[1] - 0.6:+.3f} |"
        )
        line = next(x for x in section.splitlines() if x.startswith(f"| {variant} |"))
        assert line.endswith(expected), (line, expected)
    # a subset of the stems has no reference input set; the compact separator's
    # reference ran on other folds, so it is no bar for that row
    assert "combinations.c1d_drums_vocals" not in section
    assert "No reference on the same folds and audio for: emomucs_late.c1d_full" in (
        section
    )
    assert "label-noise ceiling: 0.700 / 0.800" in section


def test_no_reference_no_section(corpus):
    stored = _stored(("baselines.c1d", corpus.summary(C1D_M, corpus.predictions())))
    _, markdown, _ = tabulate_results(stored)
    assert "### Against the reference regressor" not in markdown


def test_attention_fusion_gets_a_column_of_its_own_once_it_ran(corpus):
    """The paper has no attention fusion: its column appears only beside a run of
    it, and the published table keeps the paper's columns."""
    base = corpus.predictions(repeats=1)
    late = corpus.summary(emomucs(), base)
    _, without, _ = tabulate_results(_stored(("emomucs_late.c1d_freeze", late)))
    assert "attention |" not in without
    attention = corpus.summary(emomucs(fusion="attention"), scaled_residuals(base, 0.5))
    stored = _stored(
        ("emomucs_late.c1d_freeze", late),
        ("emomucs_attention.c1d_freeze", attention),
    )
    table, markdown, differences = tabulate_results(stored)
    assert "emomucs_attention.c1d_freeze" in set(table["variant"])
    ours, published = markdown.split("## Published")
    assert "| model | strategy | mix | early | mid | late | attention |" in ours
    cells = [
        late["metrics"]["mean"]["rmse_valence"],
        late["metrics"]["sd"]["rmse_valence"],
        attention["metrics"]["mean"]["rmse_valence"],
        attention["metrics"]["sd"]["rmse_valence"],
    ]
    assert (
        "| EmoMucs-C1D | freeze | – | – | – | {:.4f} ± {:.4f} | {:.4f} ± {:.4f} |".format(
            *cells
        )
        in ours
    )
    assert "attention |" not in published
    # attention fusion is an EmoMucs variant: it is compared with C1D-M too
    assert "emomucs_attention.c1d_freeze" in set(differences["variant"])


def _contribution_summary(label, drops, audio="oracle"):
    """A contribution summary whose ``mean`` ablation drops are ``drops``
    (source → (valence, arousal))."""
    return {
        "label": label,
        "inputs": {"audio": audio},
        "pooled": [
            {
                "method": "mean",
                "source": source,
                "dimension": dim,
                "r2_drop": values[d],
                "mean_weight": None,
            }
            for source, values in drops.items()
            for d, dim in enumerate(("valence", "arousal"))
        ],
    }


def test_contributions_section_ranks_sources_before_the_published_numbers():
    _, markdown, _ = tabulate_results({})
    assert add_contributions_section(markdown, {}, {}) == markdown
    stored = {
        "emomucs_late.c1d_freeze": _contribution_summary(
            "EmoMucs-C1D late freeze", {"vocals": (0.4, 0.0), "drums": (0.1, 0.3)}
        )
    }
    fresh = _contribution_summary(
        "EmoMucs-C1D late freeze", {"vocals": (0.05, 0.2), "drums": (0.5, 0.1)}
    )
    text = add_contributions_section(markdown, stored, {})
    assert "true source shares" not in text  # real data: no truth to compare with
    assert text.index("## Source contributions") < text.index("## Published")
    assert (
        "| emomucs_late.c1d_freeze | oracle | valence | vocals 0.40 > drums 0.10 |"
        in text
    )
    assert "| arousal | drums 0.30 > vocals 0.00 |" in text
    # this run's summary replaces the stored one of the same variant
    text = add_contributions_section(markdown, stored, {}, fresh)
    assert "| valence | drums 0.50 > vocals 0.05 |" in text
    assert "vocals 0.40" not in text


def test_contributions_are_compared_with_the_corpus_true_shares():
    _, markdown, _ = tabulate_results({})
    drops = {"vocals": (0.4, 0.0), "other": (0.3, 0.1), "drums": (0.0, 0.5)}
    drops["bass"] = (0.1, 0.2)
    stored = {"emomucs_late.c1d_freeze": _contribution_summary("late", drops)}
    shares = {
        "valence": {"vocals": 0.5, "other": 0.5, "drums": 0.0, "bass": 0.0},
        "arousal": {"drums": 0.67, "bass": 0.33, "other": 0.0, "vocals": 0.0},
    }
    text = add_contributions_section(markdown, stored, shares)
    section = text[text.index("## Contributions against the corpus' true") :]
    measured = {"valence": [0.4, 0.3, 0.0, 0.1], "arousal": [0.0, 0.1, 0.5, 0.2]}
    for dim, values in measured.items():
        truth = [shares[dim][s] for s in ("vocals", "other", "drums", "bass")]
        rho = stats.spearmanr(values, truth).statistic
        assert f"| {dim} | {rho:+.2f} |" in section
    assert section.count("| +") == 2  # the right order correlates positively


def test_contributions_of_one_variant_on_two_corpora_are_both_kept_each_with_its_truth():
    """Summaries are keyed by audio and corpus: a run on the true stems of one
    corpus does not replace one on another, and each is compared with the true
    shares of the corpus it ran on, not with the dataset root's."""
    _, markdown, _ = tabulate_results({})
    drops = {"vocals": (0.4, 0.0), "other": (0.3, 0.1), "drums": (0.0, 0.5)}
    drops["bass"] = (0.1, 0.2)
    right = {
        "valence": {"vocals": 0.5, "other": 0.4, "drums": 0.0, "bass": 0.1},
        "arousal": {"drums": 0.6, "bass": 0.3, "other": 0.1, "vocals": 0.0},
    }
    reversed_ = {d: {s: -v for s, v in shares.items()} for d, shares in right.items()}
    summaries = {
        "emomucs_late.c1d_freeze/oracle__a": {
            **_contribution_summary("late", drops),
            "key": "oracle__a",
            "true_shares": right,
        },
        "emomucs_late.c1d_freeze/oracle__b": {
            **_contribution_summary("late", drops),
            "key": "oracle__b",
            "true_shares": reversed_,
        },
        "emomucs_late.c1d_full/oracle__c": {
            **_contribution_summary("full", drops),
            "key": "oracle__c",
            "true_shares": None,  # real data: nothing to compare with
        },
    }
    text = add_contributions_section(markdown, summaries, reversed_)
    ranking = text[
        text.index("## Source contributions") : text.index("## Contributions against")
    ]
    assert ranking.count("| emomucs_late.c1d_freeze/oracle__") == 4  # 2 keys × 2 dims
    assert "| emomucs_late.c1d_full |" in ranking  # a single key keeps the bare name
    agreement = text[text.index("## Contributions against the corpus' true") :]
    line_a = next(
        x for x in agreement.splitlines() if "oracle__a | oracle | valence" in x
    )
    line_b = next(
        x for x in agreement.splitlines() if "oracle__b | oracle | valence" in x
    )
    assert "| +1.00 |" in line_a and "| -1.00 |" in line_b
    assert "c1d_full" not in agreement


def test_reporting_pipeline_adds_the_section_after_the_contributions_of_the_run():
    pipe = create_reporting_pipeline(["x.y"], ["x.y"])
    node = next(n for n in pipe.nodes if n.name == "add_contributions_section")
    assert node.inputs[1:] == [
        "contribution_summaries",
        "corpus_contributions",
        "x.y.contribution_summary",
    ]
    assert node.outputs == ["results_markdown"]
    assert "add_contributions_section" in {n.name for n in create_pipeline().nodes}
