"""Reporting: every variant's scores in the paper's table layout, beside the
paper's published numbers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from emomucs import SOURCES
from emomucs.training.metrics import METRIC_COLUMNS

METRIC_TITLES = {
    "rmse_valence": "RMSE valence (lower is better)",
    "rmse_arousal": "RMSE arousal (lower is better)",
    "r2_valence": "R² valence (higher is better)",
    "r2_arousal": "R² arousal (higher is better)",
}
SHORT_NAMES = {
    "rmse_valence": "RMSE V",
    "rmse_arousal": "RMSE A",
    "r2_valence": "R² V",
    "r2_arousal": "R² A",
}
FUSION_COLUMNS = ("early", "mid", "late")
EXTENSION_COLUMNS = ("attention",)
"""Fusions this project adds (the poster's future work): a column of the paper's
layout only when a variant of it ran, as the paper has no numbers for them."""
STRATEGY_ROWS = ("full", "finetune", "freeze")
NETWORK_ROWS = ("C1D", "C2D", "WaveC1D")

PAPER_RESULTS = pd.DataFrame(
    [
        ("C1D", None, None, None, 0.2600, 0.2444, 0.3489, 0.5573),
        ("C2D", None, None, None, 0.2466, 0.2285, 0.4143, 0.6100),
        ("EmoMucs", "C1D", "early", "freeze", 0.2536, 0.2580, 0.3803, 0.5064),
        ("EmoMucs", "C1D", "mid", "freeze", 0.2428, 0.2435, 0.4332, 0.5615),
        ("EmoMucs", "C1D", "late", "freeze", 0.2453, 0.2475, 0.4208, 0.5470),
        ("EmoMucs", "C2D", "early", "freeze", 0.2373, 0.2307, 0.4584, 0.6046),
        ("EmoMucs", "C2D", "late", "freeze", 0.2320, 0.2322, 0.4814, 0.6004),
    ],
    columns=["model", "source_model", "fusion", "strategy", *METRIC_COLUMNS],
)
"""The ISMIR 2020 poster's numbers (PMEmo, nested CV); full and finetune were
published as worse than freeze without numbers, and C2D has no mid fusion there."""


RESULT_COLUMNS = [
    "variant",
    "label",
    "model",
    "source_model",
    "sources",
    "audio",
    "fusion",
    "strategy",
    "model_kwargs",
    "n_tracks",
    "n_outer_folds",
    "folds",
    *[f"{m}_{scope}" for scope in ("mean", "sd", "pooled") for m in METRIC_COLUMNS],
]
"""Columns of ``results_table``, one row per variant."""


def _summary_row(name: str, summary: dict[str, Any]) -> dict[str, Any]:
    experiment = summary["experiment"]
    row = {
        "variant": name,
        "label": summary["label"],
        "model": experiment["model"],
        "source_model": experiment.get("source_model"),
        "sources": "+".join(experiment["sources"]),
        # Where the inputs came from: "mix" or the separator of the stems.
        "audio": summary.get("inputs", {}).get("audio", "unknown"),
        "fusion": experiment.get("fusion"),
        "strategy": experiment.get("strategy", "full"),
        "model_kwargs": str(experiment.get("model_kwargs") or ""),
        "n_tracks": summary["n_tracks"],
        "n_outer_folds": summary["n_outer_folds"],
        "folds": summary["folds"],
    }
    for scope in ("mean", "sd", "pooled"):
        for metric in METRIC_COLUMNS:
            row[f"{metric}_{scope}"] = summary["metrics"][scope][metric]
    return row


def collect_summaries(
    stored: dict[str, Callable[[], dict] | dict], fresh: tuple[dict, ...]
) -> pd.DataFrame:
    """One row per variant: the stored summaries, updated by this run's.

    Rows are keyed by label: a fresh summary replaces the stored one of the same
    variant (and keeps its stored name), and a fresh one with no stored file (an
    in-memory run) is added under its label.
    """
    summaries: dict[str, tuple[str, dict]] = {}
    for name in sorted(stored):
        value = stored[name]
        summary = value() if callable(value) else value
        summaries[summary["label"]] = (name, summary)
    for summary in fresh:
        name = summaries.get(summary["label"], (summary["label"], None))[0]
        summaries[summary["label"]] = (name, summary)
    rows = [_summary_row(name, summary) for name, summary in summaries.values()]
    table = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    return table.sort_values("variant", ignore_index=True)


def _cell(row: pd.Series, metric: str, with_sd: bool) -> str:
    mean = row[f"{metric}_mean"] if with_sd else row[metric]
    if with_sd:
        return f"{mean:.4f} ± {row[f'{metric}_sd']:.4f}"
    return f"{mean:.4f}"


def _grid_key(row: pd.Series) -> tuple[str, str, str] | None:
    """(row model, row strategy, column) of a variant in the paper's layout."""
    if row["model"] != "EmoMucs":
        if row["sources"] == "mix" and not row.get("model_kwargs"):
            return (f"{row['model']}-M", "", "mix")
        return None
    if sorted(row["sources"].split("+")) != sorted(SOURCES):
        return None
    return (f"EmoMucs-{row['source_model']}", row["strategy"], row["fusion"])


def paper_layout(table: pd.DataFrame, with_sd: bool) -> tuple[str, list[int]]:
    """Markdown: one table per metric; rows are baselines and EmoMucs network ×
    strategy, columns the mix and the three fusions (and attention, when it ran).

    Returns:
        The markdown and the positions of the rows it placed (the first variant
        for a cell wins; the rest belong in a list of other variants).
    """
    cells: dict[tuple[str, str, str], int] = {}
    for position, (_, row) in enumerate(table.iterrows()):
        key = _grid_key(row)
        if key is not None and key not in cells:
            cells[key] = position
    row_keys = [(f"{n}-M", "") for n in NETWORK_ROWS] + [
        (f"EmoMucs-{n}", s) for n in NETWORK_ROWS for s in STRATEGY_ROWS
    ]
    used_rows = {key[:2] for key in cells}
    row_keys = [key for key in row_keys if key in used_rows]
    extensions = [f for f in EXTENSION_COLUMNS if any(k[2] == f for k in cells)]
    columns = ["mix", *FUSION_COLUMNS, *extensions]
    blocks = []
    for metric, title in METRIC_TITLES.items():
        lines = [
            f"#### {title}",
            "",
            "| model | strategy | " + " | ".join(columns) + " |",
            "|---|---|" + "---|" * len(columns),
        ]
        for model, strategy in row_keys:
            values = []
            for column in columns:
                position = cells.get((model, strategy, column))
                values.append(
                    "–"
                    if position is None
                    else _cell(table.iloc[position], metric, with_sd)
                )
            lines.append(
                f"| {model} | {strategy or '–'} | " + " | ".join(values) + " |"
            )
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks), sorted(cells.values())


def _all_variants(table: pd.DataFrame) -> str:
    short = {m: SHORT_NAMES[m] for m in METRIC_COLUMNS}
    header = "| variant | label | audio | tracks | " + " | ".join(
        f"{short[m]} mean ± sd | {short[m]} pooled" for m in METRIC_COLUMNS
    )
    lines = [header + " |", "|---|---|---|---|" + "---|---|" * len(METRIC_COLUMNS)]
    for _, row in table.iterrows():
        cells = [
            f"{_cell(row, m, True)} | {row[f'{m}_pooled']:.4f}" for m in METRIC_COLUMNS
        ]
        lines.append(
            f"| {row['variant']} | {row['label']} | {row['audio']} | "
            f"{row['n_tracks']} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def tabulate_results(
    cv_summaries: dict[str, Callable[[], dict] | dict], *fresh: dict
) -> tuple[pd.DataFrame, str]:
    """The results table of every variant that has run.

    Args:
        cv_summaries: Stored summaries, variant -> summary (or its loader): the
            latest result of each variant run so far.
        *fresh: Summaries produced in this run; listing them as inputs also makes
            Kedro build the table after those variants.

    Returns:
        ``results_table`` (one row per variant: mean, sd and pooled scores) and
        ``results_markdown`` (the paper's layout, then every variant, then the
        paper's published numbers).
    """
    table = collect_summaries(cv_summaries, fresh)
    parts = [
        "# Results",
        "",
        "Nested cross-validation; cells are mean ± sample sd over outer folds. "
        "Pooled scores (all out-of-fold predictions as one set) are in the table of "
        "every variant and in results_table.csv.",
    ]
    if table.empty:
        parts += ["", "No variant has run yet."]
    else:
        fold_sets = table["folds"].nunique()
        if fold_sets > 1:
            parts += [
                "",
                f"**Warning:** these rows come from {fold_sets} different fold "
                "assignments (runs on other data or settings); compare only rows "
                "with the same `folds` in results_table.csv.",
            ]
        separators = sorted(set(table["audio"]) - {"mix"})
        if separators:
            parts += ["", "Stems from: " + ", ".join(f"`{s}`" for s in separators)]
        if len(separators) > 1:
            parts += [
                "",
                f"**Warning:** the stem-based rows come from {len(separators)} "
                "different separators (each variant keeps its latest run); see the "
                "`audio` column of every variant below.",
            ]
        grid, _ = paper_layout(table, with_sd=True)
        parts += [
            "",
            "## In the paper's layout",
            "",
            "EmoMucs rows fuse all four stems; C2D mid fusion cuts the hidden layer "
            "this project adds to C2D (the paper has no C2D mid fusion); attention "
            "fusion is the poster's future work (no published numbers).",
            "",
            grid,
            "",
            "## Every variant",
            "",
            _all_variants(table),
        ]
    paper_grid, _ = paper_layout(PAPER_RESULTS.assign(sources=_paper_sources()), False)
    parts += [
        "",
        "## Published (de Berardinis et al., ISMIR 2020, PMEmo)",
        "",
        "Full and finetune were reported as worse than freeze, without numbers; the "
        "paper has no C2D mid fusion.",
        "",
        paper_grid,
        "",
    ]
    return table, "\n".join(parts)


def _paper_sources() -> list[str]:
    return [
        "mix" if model != "EmoMucs" else "+".join(SOURCES)
        for model in PAPER_RESULTS["model"]
    ]


def tabulate_paper_results() -> pd.DataFrame:
    """The paper's published numbers as a table (see :data:`PAPER_RESULTS`)."""
    return PAPER_RESULTS.copy()
