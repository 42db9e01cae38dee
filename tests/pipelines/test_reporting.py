"""Reporting: the results table of whichever variants ran."""

from __future__ import annotations

import pandas as pd
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from emomucs import SOURCES
from emomucs.pipelines.reporting import create_pipeline, create_reporting_pipeline
from emomucs.pipelines.reporting.nodes import PAPER_RESULTS, tabulate_results
from emomucs.training.metrics import METRIC_COLUMNS


def _summary(model, sources, folds="f1", value=0.25, audio=None, **experiment):
    label = (
        f"EmoMucs-{experiment['source_model']} {experiment['fusion']} "
        f"{experiment['strategy']}"
        if model == "EmoMucs"
        else f"{model}-M"
    )
    metrics = {m: value for m in METRIC_COLUMNS}
    return {
        "label": label,
        "experiment": {"model": model, "sources": list(sources), **experiment},
        "folds": folds,
        "n_outer_folds": 3,
        "n_tracks": 30,
        "inputs": {
            "representation": "log_mel",
            "audio": audio or ("mix" if list(sources) == ["mix"] else "oracle"),
        },
        "metrics": {
            "mean": metrics,
            "sd": dict.fromkeys(metrics, 0.01),
            "pooled": metrics,
        },
    }


def _emomucs(network, fusion, strategy, **kwargs):
    return _summary(
        "EmoMucs",
        SOURCES,
        source_model=network,
        fusion=fusion,
        strategy=strategy,
        **kwargs,
    )


def test_table_holds_whatever_ran_in_the_papers_layout():
    stored = {
        "baselines.c1d": lambda: _summary("C1D", ["mix"], value=0.31),
        "emomucs_late.c2d_freeze": lambda: _emomucs("C2D", "late", "freeze", value=0.2),
    }
    fresh = _emomucs("C1D", "mid", "finetune", value=0.4)
    table, markdown = tabulate_results(stored, fresh)
    assert list(table["variant"]) == [
        "EmoMucs-C1D mid finetune",  # fresh, not stored: named by its label
        "baselines.c1d",
        "emomucs_late.c2d_freeze",
    ]
    assert table.loc[1, "rmse_valence_mean"] == 0.31
    lines = markdown.splitlines()
    rmse_v = lines[lines.index("#### RMSE valence (lower is better)") :]
    assert "| C1D-M | – | 0.3100 ± 0.0100 | – | – | – |" in rmse_v
    assert "| EmoMucs-C1D | finetune | – | – | 0.4000 ± 0.0100 | – |" in rmse_v
    assert "| EmoMucs-C2D | freeze | – | – | – | 0.2000 ± 0.0100 |" in rmse_v
    assert "Warning" not in markdown


def test_a_fresh_result_replaces_the_stored_one_and_mixed_folds_are_flagged():
    stored = {"emomucs_late.c1d_full": _emomucs("C1D", "late", "full", value=0.5)}
    fresh = _emomucs("C1D", "late", "full", value=0.3)
    other = _summary("C2D", ["mix"], folds="f2")
    table, markdown = tabulate_results({**stored, "baselines.c2d": other}, fresh)
    row = table.set_index("variant").loc["emomucs_late.c1d_full"]
    assert row["r2_arousal_pooled"] == 0.3
    assert len(table) == 2
    assert "2 different fold assignments" in markdown


def test_the_table_names_the_stems_and_flags_mixed_separators():
    stored = {
        "baselines.c1d": _summary("C1D", ["mix"]),
        "emomucs_late.c1d_full": _emomucs("C1D", "late", "full", audio="oracle"),
    }
    table, markdown = tabulate_results(stored)
    assert list(table["audio"]) == ["mix", "oracle"]
    assert "Stems from: `oracle`" in markdown
    assert "| emomucs_late.c1d_full | EmoMucs-C1D late full | oracle | 30 |" in markdown
    assert "different separators" not in markdown

    compact = _emomucs("C1D", "late", "freeze", audio="local:compact:ab12")
    table, markdown = tabulate_results(stored, compact)
    assert "Stems from: `local:compact:ab12`, `oracle`" in markdown
    assert "2 different separators" in markdown


def test_published_numbers_sit_beside_ours():
    _, markdown = tabulate_results({})
    assert "No variant has run yet." in markdown
    published = markdown[markdown.index("## Published") :]
    assert "| EmoMucs-C2D | freeze | – | 0.2373 | – | 0.2320 |" in published
    assert "| C2D-M | – | 0.6100 | – | – | – |" in published  # R² arousal
    freeze = PAPER_RESULTS[PAPER_RESULTS["strategy"] == "freeze"]
    assert len(PAPER_RESULTS) == 7 and len(freeze) == 5


def test_pipeline_orders_the_table_after_the_variants_of_the_run():
    pipe = create_reporting_pipeline(["baselines.c1d"])
    node = next(n for n in pipe.nodes if n.name == "tabulate_results")
    assert node.inputs == ["cv_summaries", "baselines.c1d.cv_summary"]
    catalog = DataCatalog(
        {
            "cv_summaries": MemoryDataset({}),
            "baselines.c1d.cv_summary": MemoryDataset(_summary("C1D", ["mix"])),
        }
    )
    outputs = SequentialRunner().run(pipe, catalog)
    assert set(outputs) == {"results_table", "results_markdown", "paper_results"}
    assert isinstance(catalog.load("paper_results"), pd.DataFrame)
    assert [
        n.inputs for n in create_pipeline().nodes if n.name == "tabulate_results"
    ] == [["cv_summaries"]]


def test_attention_fusion_gets_a_column_of_its_own_once_it_ran():
    """The paper has no attention fusion: its column appears only beside a run of
    it, and the published table keeps the paper's columns."""
    late = {"emomucs_late.c1d_freeze": _emomucs("C1D", "late", "freeze", value=0.3)}
    _, without = tabulate_results(late)
    assert "attention |" not in without
    stored = {
        **late,
        "emomucs_attention.c1d_freeze": _emomucs(
            "C1D", "attention", "freeze", value=0.2
        ),
    }
    table, markdown = tabulate_results(stored)
    assert "emomucs_attention.c1d_freeze" in set(table["variant"])
    ours, published = markdown.split("## Published")
    assert "| model | strategy | mix | early | mid | late | attention |" in ours
    assert (
        "| EmoMucs-C1D | freeze | – | – | – | 0.3000 ± 0.0100 | 0.2000 ± 0.0100 |"
        in (ours)
    )
    assert "attention |" not in published
