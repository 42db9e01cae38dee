"""Reporting: every variant's scores in the paper's table layout, their spread over
training repeats, paired differences from the mix baselines, and the paper's
published numbers.

The table is built from summaries (``cv_summary``, one per variant × audio ×
corpus). Rows of different corpora are never compared: each corpus gets its own
section. Within a corpus, every row names the settings where it departs from the
others, and a paired difference is given only when the baseline ran with the same
folds, features, training, network arguments and code.

The markdown is a list of sections (:data:`CORPUS_SECTIONS`, each a function of
one corpus' :class:`CorpusResults`), so a new section is one function more.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from emomucs import SOURCES
from emomucs.interpret import collect_contribution_summaries, summary_ranking
from emomucs.pipelines.experiments.variants import TWINS
from emomucs.training.metrics import (
    DIMENSIONS,
    LOWER_IS_BETTER,
    METRIC_COLUMNS,
    SUMMARY_SCOPES,
    compare_folds,
    metric_name,
    metric_title,
)

METRIC_TITLES = {m: metric_title(m) for m in METRIC_COLUMNS}
SHORT_NAMES = {m: metric_name(m, short=True) for m in METRIC_COLUMNS}
FUSION_COLUMNS = ("early", "mid", "late")
EXTENSION_COLUMNS = ("attention",)
"""Fusions this project adds (the poster's future work): a column of the paper's
layout only when a variant of it ran, as the paper has no numbers for them."""
STRATEGY_ROWS = ("full", "finetune", "freeze")
NETWORK_ROWS = ("C1D", "C2D", "WaveC1D")
LEVEL = 0.95
"""Confidence level of the paired intervals."""

COMPARED_SETTINGS = ("folds", "features", "training", "network", "code")
"""Settings every row of a corpus should share (the corpus itself splits sections,
the audio is a column): a row departing from the most common value names the key in
its ``differs`` column, and a paired difference needs them equal."""

UNKNOWN_CORPUS = "unknown"
"""Corpus of summaries written before settings were recorded."""

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

SCOPES = SUMMARY_SCOPES
RESULT_COLUMNS = [
    "variant",
    "key",
    "label",
    "model",
    "source_model",
    "sources",
    "audio",
    "fusion",
    "strategy",
    "model_kwargs",
    "per_source",
    "representation",
    "corpus",
    "n_tracks",
    "n_outer_folds",
    "n_repeats",
    "folds",
    "fingerprint",
    "differs",
    *[f"{m}_{scope}" for scope in SCOPES for m in METRIC_COLUMNS],
]
"""Columns of ``results_table``, one row per variant × audio × corpus: ``mean`` and
``sd`` over outer folds × repeats, ``pooled`` and ``pooled_sd`` over repeats of each
repeat's pooled score; ``differs``: the settings where the row departs from the
other rows of its corpus."""

DIFFERENCE_COLUMNS = [
    "variant",
    "key",
    "label",
    "audio",
    "corpus",
    "comparison",
    "baseline",
    "baseline_label",
    "baseline_audio",
    "status",
    "n_pairs",
    "test_train_ratio",
    *[
        f"{m}_{stat}"
        for m in METRIC_COLUMNS
        for stat in (
            "diff",
            "sd",
            "ci_low",
            "ci_high",
            "ci_low_naive",
            "ci_high_naive",
            "p_value",
            "significant",
        )
    ],
]
"""Columns of ``results_differences``, one row per EmoMucs variant × audio ×
corpus (``comparison``: ``mix baseline``), and one per variant beyond the paper ×
audio × its twin's audio (``twin``): variant − baseline (or twin) per metric,
paired by (repeat, outer fold), with the
Nadeau–Bengio corrected 95 % interval (``ci_low``/``ci_high``), the plain t
interval for comparison (``*_naive``), the corrected p-value and whether the
corrected interval excludes 0. ``status`` is ``ok`` or why there is no number."""


@dataclass(frozen=True)
class Entry:
    """One stored summary: the variant (namespace) and what it wrote."""

    variant: str
    summary: dict[str, Any]

    @property
    def key(self) -> str:
        return self.summary.get("key", "legacy")

    @property
    def settings(self) -> dict[str, Any]:
        return self.summary.get("settings", {})

    @property
    def corpus(self) -> str:
        return self.settings.get("corpus", {}).get("fingerprint", UNKNOWN_CORPUS)


@dataclass
class CorpusResults:
    """Everything one corpus section of the markdown shows.

    Attributes:
        corpus: The corpus fingerprint (``unknown`` for older summaries).
        table: Its rows of ``results_table``.
        differences: Its rows of ``results_differences``.
        differing: Flattened setting -> {value: variants} for settings whose
            value is not the same in every row that has it.
        references: The reference regressor's summaries on this corpus (one per
            stems it was run on).
    """

    corpus: str
    table: pd.DataFrame
    differences: pd.DataFrame
    differing: dict[str, dict[str, list[str]]]
    references: list[dict[str, Any]] = field(default_factory=list)


# Collecting summaries ----------------------------------------------------------------


def collect_entries(
    stored: Mapping[str, Callable[[], dict] | dict], fresh: Mapping[str, dict]
) -> list[Entry]:
    """Every summary, one per (variant, key); this run's replace stored ones.

    Args:
        stored: Results store partitions: ``<variant>/<key>`` (or a bare
            ``<variant>`` written before summaries were keyed) -> summary or loader.
        fresh: Variant -> summary produced in this run.
    """
    entries: dict[tuple[str, str], Entry] = {}
    for name in sorted(stored):
        value = stored[name]
        summary = value() if callable(value) else value
        entry = Entry(name.split("/")[0], summary)
        entries[(entry.variant, entry.key)] = entry
    for variant, summary in fresh.items():
        entry = Entry(variant, summary)
        entries[(entry.variant, entry.key)] = entry
    return sorted(entries.values(), key=lambda e: (e.variant, e.key))


def flatten_settings(settings: Mapping[str, Any], keys=COMPARED_SETTINGS) -> dict:
    """``{"training.learning_rate": "0.005", …}`` for the compared settings."""
    flat: dict[str, str] = {}

    def walk(value: Any, prefix: str) -> None:
        if isinstance(value, Mapping) and value:
            for k, v in value.items():
                walk(v, f"{prefix}.{k}")
        else:
            flat[prefix] = repr(value) if not isinstance(value, str) else value

    for key in keys:
        if key in settings:
            walk(settings[key], key)
    return flat


def differing_settings(entries: list[Entry]) -> dict[str, dict[str, list[str]]]:
    """Flattened settings whose value differs between the entries that have it."""
    values: dict[str, dict[str, list[str]]] = {}
    for entry in entries:
        for key, value in flatten_settings(entry.settings).items():
            values.setdefault(key, {}).setdefault(value, []).append(entry.variant)
    return {k: v for k, v in sorted(values.items()) if len(v) > 1}


def _departures(entry: Entry, differing: dict[str, dict[str, list[str]]]) -> str:
    """The settings where ``entry`` departs from the most common value."""
    flat = flatten_settings(entry.settings)
    keys = []
    for key, by_value in differing.items():
        if key not in flat:
            continue
        common = max(by_value.items(), key=lambda item: (len(item[1]), item[0]))[0]
        if flat[key] != common:
            keys.append(key)
    return ", ".join(keys)


def _summary_row(entry: Entry, differs: str) -> dict[str, Any]:
    summary, experiment = entry.summary, entry.summary["experiment"]
    row = {
        "variant": entry.variant,
        "key": entry.key,
        "label": summary["label"],
        "model": experiment["model"],
        "source_model": experiment.get("source_model"),
        "sources": "+".join(experiment["sources"]),
        # Where the inputs came from: "mix", "oracle" or the stems' separator.
        "audio": summary.get("inputs", {}).get("audio", "unknown"),
        "fusion": experiment.get("fusion"),
        "strategy": experiment.get("strategy", "full"),
        "model_kwargs": str(experiment.get("model_kwargs") or ""),
        # beyond the paper: a network per source, features other than log-mel
        "per_source": str(experiment.get("per_source") or ""),
        "representation": _representation(entry),
        "corpus": entry.corpus,
        "n_tracks": summary["n_tracks"],
        "n_outer_folds": summary["n_outer_folds"],
        "n_repeats": summary.get("n_repeats", 1),
        "folds": summary["folds"],
        "fingerprint": summary.get("fingerprint", ""),
        "differs": differs,
    }
    metrics = summary["metrics"]
    for scope in SCOPES:
        for metric in METRIC_COLUMNS:
            value = metrics.get(scope, {}).get(metric)
            if value is None and scope == "pooled_sd" and "pooled" in metrics:
                value = np.nan  # one repeat, or an older summary: no spread
            row[f"{metric}_{scope}"] = np.nan if value is None else float(value)
    return row


def tabulate_rows(entries: list[Entry]) -> pd.DataFrame:
    """``results_table``: one row per entry (see :data:`RESULT_COLUMNS`)."""
    rows = []
    by_corpus: dict[str, list[Entry]] = {}
    for entry in entries:
        by_corpus.setdefault(entry.corpus, []).append(entry)
    for group in by_corpus.values():
        differing = differing_settings(group)
        rows += [_summary_row(e, _departures(e, differing)) for e in group]
    table = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    return table.sort_values(["variant", "key"], ignore_index=True)


# Paired differences --------------------------------------------------------------


def _representation(entry: Entry) -> str:
    return entry.summary.get("inputs", {}).get("representation", "log_mel")


def _is_baseline_of(candidate: Entry, network: str, representation: str) -> bool:
    """A mix model of ``network`` with its default arguments, on the same features
    (a chroma EmoMucs is compared with C1D-M on chroma)."""
    experiment = candidate.summary["experiment"]
    return (
        experiment["model"] == network
        and list(experiment["sources"]) == ["mix"]
        and not experiment.get("model_kwargs")
        and _representation(candidate) == representation
    )


def _row_of(entry: Entry, comparison: str, other_label: str) -> dict[str, Any]:
    return {
        "variant": entry.variant,
        "key": entry.key,
        "label": entry.summary["label"],
        "audio": entry.summary.get("inputs", {}).get("audio", "unknown"),
        "corpus": entry.corpus,
        "comparison": comparison,
        "baseline": None,
        "baseline_label": other_label,
        "baseline_audio": None,
        "n_pairs": 0,
        "test_train_ratio": np.nan,
    }


def _difference_row(entry: Entry, entries: list[Entry]) -> dict[str, Any]:
    """``entry`` minus the mix baseline of its network, on the same corpus."""
    experiment = entry.summary["experiment"]
    network = experiment["source_model"]
    row = _row_of(entry, "mix baseline", f"{network}-M")
    representation = _representation(entry)
    candidates = [
        e
        for e in entries
        if e.corpus == entry.corpus and _is_baseline_of(e, network, representation)
    ]
    if entry.corpus == UNKNOWN_CORPUS or "per_fold" not in entry.summary:
        return row | {"status": "older summary without per-fold scores; rerun it"}
    if not candidates:
        return row | {"status": f"no {network}-M run on this corpus"}
    return _paired(entry, candidates[0], row)


def _paired(
    entry: Entry,
    baseline: Entry,
    row: dict[str, Any],
    may_differ: tuple[str, ...] = (),
) -> dict[str, Any]:
    """``row`` with ``entry`` − ``baseline`` per metric, paired by (repeat, outer
    fold), or the reason there is none: a compared setting other than
    ``may_differ`` differs."""
    row = row | {
        "baseline": baseline.variant,
        "baseline_label": baseline.summary["label"],
        "baseline_audio": _audio(baseline),
    }
    ours = flatten_settings(entry.settings)
    theirs = flatten_settings(baseline.settings)
    differing = sorted(
        {
            k.split(".")[0]
            for k in set(ours) | set(theirs)
            if ours.get(k) != theirs.get(k)
        }
        - set(may_differ)
    )
    if differing or "per_fold" not in baseline.summary:
        what = ", ".join(differing) or "no per-fold scores"
        return row | {"status": f"{row['baseline_label']} differs: {what}"}
    compared = compare_folds(
        entry.summary["per_fold"],
        baseline.summary["per_fold"],
        int(entry.settings["corpus"]["n_tracks"]),
        LEVEL,
    )
    any_metric = compared[METRIC_COLUMNS[0]]
    if any_metric["n"] < 2:
        return row | {
            "status": f"fewer than 2 folds shared with {row['baseline_label']}"
        }
    row |= {
        "status": "ok",
        "n_pairs": any_metric["n"],
        "test_train_ratio": any_metric["test_train_ratio"],
    }
    for metric, result in compared.items():
        row[f"{metric}_diff"] = result["mean"]
        for stat in ("sd", "ci_low", "ci_high", "ci_low_naive", "ci_high_naive"):
            row[f"{metric}_{stat}"] = result[stat]
        row[f"{metric}_p_value"] = result["p_value"]
        row[f"{metric}_significant"] = bool(
            result["ci_low"] > 0 or result["ci_high"] < 0
        )
    return row


def _twin_rows(entry: Entry, twin: str, entries: list[Entry]) -> list[dict[str, Any]]:
    """``entry`` minus its twin (:data:`~emomucs.pipelines.experiments.variants.
    TWINS`): the same corpus, the same audio where the twin ran on it, else every
    audio it ran on (the harmonic–percussive split's twin is on Demucs' stems).
    Features and network may differ: that is what the pair compares."""
    row = _row_of(entry, "twin", twin)
    if entry.corpus == UNKNOWN_CORPUS or "per_fold" not in entry.summary:
        return [row | {"status": "older summary without per-fold scores; rerun it"}]
    candidates = [e for e in entries if e.variant == twin and e.corpus == entry.corpus]
    same_audio = [e for e in candidates if _audio(e) == _audio(entry)]
    if not candidates:
        return [row | {"status": f"no {twin} run on this corpus"}]
    return [
        _paired(entry, other, row, may_differ=("features", "network"))
        for other in same_audio or candidates
    ]


def _audio(entry: Entry) -> str:
    return entry.summary.get("inputs", {}).get("audio", "unknown")


def tabulate_differences(entries: list[Entry]) -> pd.DataFrame:
    """``results_differences``: every EmoMucs entry against its mix baseline, and
    every variant beyond the paper against its twin (``comparison``).

    The baseline is the mix model of the same network (C1D → C1D-M, C2D, also
    with the hidden layer mid fusion cuts → C2D-M) on the same corpus and
    features; the twins are :data:`~emomucs.pipelines.experiments.variants.TWINS`.
    """
    rows = [
        _difference_row(e, entries)
        for e in entries
        if e.summary["experiment"]["model"] == "EmoMucs"
    ]
    for entry in entries:
        if entry.variant in TWINS:
            rows += _twin_rows(entry, TWINS[entry.variant], entries)
    return pd.DataFrame(rows, columns=DIFFERENCE_COLUMNS)


# Markdown ------------------------------------------------------------------------


def _spread(mean: float, sd: float) -> str:
    if pd.isna(mean):
        return "–"
    return f"{mean:.4f}" if pd.isna(sd) else f"{mean:.4f} ± {sd:.4f}"


def _cell(row: pd.Series, metric: str, with_sd: bool) -> str:
    if with_sd:
        return _spread(row[f"{metric}_mean"], row[f"{metric}_sd"])
    return f"{row[metric]:.4f}"


def _differs(row: pd.Series) -> str:
    """The row's ``differs`` (NaN when read back from the csv means none)."""
    value = row.get("differs")
    return value if isinstance(value, str) else ""


def _grid_key(row: pd.Series) -> tuple[str, str, str] | None:
    """(row model, row strategy, column) of a variant in the paper's layout."""
    if isinstance(row.get("per_source"), str) and row["per_source"]:
        return None  # not the paper's architecture
    if row.get("representation", "log_mel") not in ("log_mel", "waveform"):
        return None  # not the paper's features
    if row["model"] != "EmoMucs":
        if row["sources"] == "mix" and not row.get("model_kwargs"):
            return (f"{row['model']}-M", "", "mix")
        return None
    if sorted(row["sources"].split("+")) != sorted(SOURCES):
        return None
    return (f"EmoMucs-{row['source_model']}", row["strategy"], row["fusion"])


def paper_layout(table: pd.DataFrame, with_sd: bool) -> tuple[str, list[int]]:
    """Markdown: one table per metric; rows are baselines and EmoMucs network ×
    strategy, columns the mix and the three fusions (and attention, when it ran). A
    cell whose row departs from the others' settings (``differs``) carries †.

    Returns:
        The markdown and the positions of the rows it placed (the first variant
        for a cell wins).
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
                if position is None:
                    values.append("–")
                    continue
                row = table.iloc[position]
                mark = " †" if _differs(row) else ""
                values.append(_cell(row, metric, with_sd) + mark)
            lines.append(
                f"| {model} | {strategy or '–'} | " + " | ".join(values) + " |"
            )
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks), sorted(cells.values())


def section_paper_layout(results: CorpusResults) -> str | None:
    """The paper's grid, one per stems audio (the mix column is the same)."""
    table = results.table
    stems = sorted(set(table["audio"]) - {"mix"}) or ["mix"]
    parts = [
        "### In the paper's layout",
        "",
        "Cells: mean ± sd over outer folds × repeats (the paper reports the mean "
        "over outer folds). EmoMucs rows fuse all four stems; C2D mid fusion cuts "
        "the hidden layer this project adds to C2D (the paper has no C2D mid "
        "fusion); attention fusion is the poster's future work (no published "
        "numbers). † marks a row that ran with other settings than the rest (see "
        "*differs* below).",
    ]
    for audio in stems:
        rows = table[table["audio"].isin({"mix", audio})].reset_index(drop=True)
        grid, placed = paper_layout(rows, with_sd=True)
        if not placed:
            continue
        if audio != "mix" or len(stems) > 1:
            parts += ["", f"**Stems: `{audio}`**" if audio != "mix" else "**Mix**"]
        parts += ["", grid]
    return "\n".join(parts)


def _difference_cell(row: pd.Series, metric: str) -> str:
    if row["status"] != "ok":
        return row["status"]
    mark = " *" if row[f"{metric}_significant"] else ""
    return (
        f"{row[f'{metric}_diff']:+.4f} [{row[f'{metric}_ci_low']:+.4f}, "
        f"{row[f'{metric}_ci_high']:+.4f}]{mark}"
    )


def _significant(row: pd.Series) -> str:
    if row["status"] != "ok":
        return "–"
    found = []
    for metric in METRIC_COLUMNS:
        if row[f"{metric}_significant"]:
            lower = row[f"{metric}_diff"] < 0
            better = lower if metric in LOWER_IS_BETTER else not lower
            found.append(f"{SHORT_NAMES[metric]} {'better' if better else 'worse'}")
    return ", ".join(found) or "none"


def section_differences(results: CorpusResults) -> str | None:
    """Every EmoMucs variant minus its mix baseline, with 95 % intervals."""
    differences = results.differences
    differences = differences[differences["comparison"] != "twin"]
    if differences.empty:
        return None
    ok = differences[differences["status"] == "ok"]
    ratio = (
        f", n_test/n_train = {ok['test_train_ratio'].iloc[0]:.2f} here"
        if not ok.empty and ok["test_train_ratio"].nunique() == 1
        else ""
    )
    header = "| variant | label | audio | baseline | pairs | " + " | ".join(
        f"Δ{SHORT_NAMES[m]}" for m in METRIC_COLUMNS
    )
    lines = [
        "### Paired differences from the mix baseline",
        "",
        "Δ = variant − its network's mix baseline (C1D → C1D-M; C2D, also C2D with "
        "the hidden layer → C2D-M), paired on the same (repeat, outer fold) test "
        "tracks; in brackets the 95 % interval. Outer folds share most of their "
        "training tracks, so a plain t interval over folds × repeats is too narrow: "
        "these use Nadeau and Bengio's corrected resampled t (variance × "
        f"(1/J + n_test/n_train) for J pairs{ratio}; the plain "
        "intervals are in results_differences.csv). * and the *significant* column: "
        "the interval excludes 0. Lower RMSE and higher R² are better.",
        "",
        header + " | significant |",
        "|---|---|---|---|---|" + "---|" * len(METRIC_COLUMNS) + "---|",
    ]
    for _, row in differences.iterrows():
        cells = [_difference_cell(row, m) for m in METRIC_COLUMNS]
        lines.append(
            f"| {row['variant']} | {row['label']} | {row['audio']} | "
            f"{row['baseline_label']} | {row['n_pairs'] or '–'} | "
            + " | ".join(cells)
            + f" | {_significant(row)} |"
        )
    return "\n".join(lines)


def section_twins(results: CorpusResults) -> str | None:
    """Each variant beyond the paper minus its twin, with 95 % intervals."""
    twins = results.differences[results.differences["comparison"] == "twin"]
    if twins.empty:
        return None
    lines = [
        "### Beyond the paper: paired differences from the twin",
        "",
        "Δ = variant − its twin (a network per source − C1D for every stem; "
        "EmoMucs on the harmonic–percussive split − on the separator's four stems; "
        "chroma or constant-Q − log-mel), paired on the same (repeat, outer fold) "
        "test tracks; 95 % intervals corrected as above. Features, network and "
        "audio may differ (that is the comparison); folds, training and code may not.",
        "",
        "| variant | label | audio | twin | twin audio | pairs | "
        + " | ".join(f"Δ{SHORT_NAMES[m]}" for m in METRIC_COLUMNS)
        + " | significant |",
        "|---|---|---|---|---|---|" + "---|" * len(METRIC_COLUMNS) + "---|",
    ]
    for _, row in twins.iterrows():
        cells = [_difference_cell(row, m) for m in METRIC_COLUMNS]
        twin_audio = (
            row["baseline_audio"] if isinstance(row["baseline_audio"], str) else "–"
        )
        lines.append(
            f"| {row['variant']} | {row['label']} | {row['audio']} | "
            f"{row['baseline_label']} | {twin_audio} | {row['n_pairs'] or '–'} | "
            + " | ".join(cells)
            + f" | {_significant(row)} |"
        )
    return "\n".join(lines)


def section_audio(results: CorpusResults) -> str | None:
    """Each variant's pooled R² on every audio it ran on, beside the mix."""
    table = results.table
    audios = sorted(set(table["audio"]) - {"mix"})
    stems = table[table["audio"] != "mix"]
    if len(audios) < 2:
        return None
    lines = [
        "### Audio side by side",
        "",
        "Pooled R² valence / arousal (mean over repeats) of each variant on each "
        "audio; the mix baseline of its network in the last column.",
        "",
        "| variant | " + " | ".join(f"`{a}`" for a in audios) + " | mix baseline |",
        "|---|" + "---|" * (len(audios) + 1),
    ]
    mix = table[table["audio"] == "mix"].set_index("model")
    for variant, rows in stems.groupby("variant", sort=True):
        by_audio = rows.set_index("audio")
        cells = [
            (
                f"{by_audio.loc[a, 'r2_valence_pooled']:.3f} / "
                f"{by_audio.loc[a, 'r2_arousal_pooled']:.3f}"
            )
            if a in by_audio.index
            else "–"
            for a in audios
        ]
        network = rows["source_model"].iloc[0] or rows["model"].iloc[0]
        if network in mix.index:
            base = mix.loc[[network]].iloc[0]
            cells.append(
                f"{base['r2_valence_pooled']:.3f} / {base['r2_arousal_pooled']:.3f}"
            )
        else:
            cells.append("–")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def section_every_variant(results: CorpusResults) -> str | None:
    """Every row: pooled and per-fold scores with their spread, and *differs*."""
    table = results.table
    header = "| variant | label | audio | tracks | repeats | " + " | ".join(
        f"{SHORT_NAMES[m]} pooled | {SHORT_NAMES[m]} folds" for m in METRIC_COLUMNS
    )
    lines = [
        "### Every variant",
        "",
        "*pooled*: the score of all out-of-fold predictions of one training repeat, "
        "mean ± sd over repeats (the spread seeds alone cause); *folds*: mean ± sd "
        "over outer folds × repeats (test folds add their own spread). *differs*: "
        "settings where the row departs from the most common value in this corpus.",
        "",
        header + " | differs |",
        "|---|---|---|---|---|" + "---|---|" * len(METRIC_COLUMNS) + "---|",
    ]
    for _, row in table.iterrows():
        cells = [
            f"{_spread(row[f'{m}_pooled'], row[f'{m}_pooled_sd'])} | "
            f"{_spread(row[f'{m}_mean'], row[f'{m}_sd'])}"
            for m in METRIC_COLUMNS
        ]
        lines.append(
            f"| {row['variant']} | {row['label']} | {row['audio']} | "
            f"{row['n_tracks']} | {row['n_repeats']} | "
            + " | ".join(cells)
            + f" | {_differs(row) or '–'} |"
        )
    return "\n".join(lines)


def reference_input_set(row: pd.Series) -> str | None:
    """The reference's input set that sees what a row's variant sees: the mix, one
    stem, or every stem (``stems``); None for a subset of the stems."""
    sources = row["sources"].split("+")
    if sources == ["mix"]:
        return "mix"
    if len(sources) == 1 and sources[0] in SOURCES:
        return sources[0]
    if sorted(sources) == sorted(SOURCES):
        return "stems"
    return None


def _matching_reference(
    row: pd.Series, references: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """The reference on the row's folds and audio (any stems' for a mix row)."""
    for reference in references:
        if reference.get("folds") != row["folds"]:
            continue
        if row["audio"] == "mix" or reference.get("stems") == row["audio"]:
            return reference
    return None


def _pair(values: Mapping[str, float], fmt: str = "{:.3f}") -> str:
    return " / ".join(fmt.format(values[d]) for d in DIMENSIONS)


def section_reference(results: CorpusResults) -> str | None:
    """Each variant beside the reference regressor on the same folds and audio."""
    if not results.references:
        return None
    lines = [
        "### Against the reference regressor",
        "",
        "The bar for each variant: a ridge on per-band log-mel mean and sd "
        "(`kedro run --pipeline=reference`, docs/data.md) fitted on the same outer "
        "folds and the same audio — the mix for a mix model, one stem for a "
        "single-source model, every stem for EmoMucs. Pooled R² valence / arousal "
        "(the variant's: mean over repeats); *gap*: variant − reference.",
        "",
        "| variant | label | audio | variant | reference | gap |",
        "|---|---|---|---|---|---|",
    ]
    missing = []
    for _, row in results.table.iterrows():
        input_set = reference_input_set(row)
        if input_set is None:
            continue
        reference = _matching_reference(row, results.references)
        if reference is None or input_set not in reference.get("pooled_r2", {}):
            missing.append(row["variant"])
            continue
        bar = reference["pooled_r2"][input_set]
        own = {d: row[f"r2_{d}_pooled"] for d in DIMENSIONS}
        gap = {d: own[d] - bar[d] for d in own}
        lines.append(
            f"| {row['variant']} | {row['label']} | {row['audio']} | {_pair(own)} | "
            f"{_pair(bar)} (`{input_set}`) | {_pair(gap, '{:+.3f}')} |"
        )
    for reference in results.references:
        ceiling = reference.get("ceiling")
        if ceiling:
            empirical = {d: ceiling[d]["r2_empirical"] for d in DIMENSIONS}
            lines += [
                "",
                f"Reference on every stem (`{reference['stems']}`): "
                f"{_pair(reference['pooled_r2']['stems'])}; the corpus' label-noise "
                f"ceiling: {_pair(empirical)}.",
            ]
    if missing:
        lines += [
            "",
            "No reference on the same folds and audio for: "
            + ", ".join(sorted(set(missing)))
            + " (run `kedro run --pipeline=reference` with the same parameters).",
        ]
    return "\n".join(lines)


def section_settings(results: CorpusResults) -> str | None:
    """The values of every setting that differs between rows of the corpus."""
    if not results.differing:
        return None
    lines = ["### Settings that differ between rows", ""]
    for key, by_value in results.differing.items():
        values = "; ".join(
            f"`{value}`: " + ", ".join(sorted(set(variants)))
            for value, variants in sorted(by_value.items(), key=lambda v: -len(v[1]))
        )
        lines.append(f"- `{key}` — {values}")
    return "\n".join(lines)


CORPUS_SECTIONS: list[Callable[[CorpusResults], str | None]] = [
    section_paper_layout,
    section_differences,
    section_reference,
    section_twins,
    section_audio,
    section_every_variant,
    section_settings,
]
"""The markdown of one corpus, in order; a section returning None is left out."""


def _corpus_title(results: CorpusResults) -> str:
    table = results.table
    if results.corpus == UNKNOWN_CORPUS:
        return (
            "## Older summaries (no settings recorded)\n\n"
            "Written before summaries named their corpus and settings: they cannot "
            "be compared with the rows above. Rerun these variants."
        )
    tracks = ", ".join(str(n) for n in sorted(set(table["n_tracks"])))
    audio = Counter(table["audio"])
    named = ", ".join(
        f"`{a}` ({n} row{'s' if n > 1 else ''})" for a, n in sorted(audio.items())
    )
    return (
        f"## Corpus `{results.corpus}` ({tracks} tracks)\n\n"
        f"Corpus fingerprint `{results.corpus}` (track ids and labels). "
        f"Audio: {named}."
    )


def corpus_results(
    table: pd.DataFrame,
    differences: pd.DataFrame,
    entries: list[Entry],
    references: list[dict[str, Any]] = (),
) -> list[CorpusResults]:
    """One :class:`CorpusResults` per corpus: most rows first, then most tracks;
    summaries without settings last."""
    corpora = Counter(table["corpus"])
    tracks = table.groupby("corpus")["n_tracks"].max()
    order = sorted(
        corpora,
        key=lambda c: (c == UNKNOWN_CORPUS, -corpora[c], -tracks[c], str(c)),
    )
    return [
        CorpusResults(
            corpus,
            table[table["corpus"] == corpus].reset_index(drop=True),
            differences[differences["corpus"] == corpus].reset_index(drop=True),
            differing_settings([e for e in entries if e.corpus == corpus]),
            [r for r in references if r.get("corpus") == corpus],
        )
        for corpus in order
    ]


def collect_references(
    stored: Mapping[str, Callable[[], dict] | dict] | None,
    fresh: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Every stored reference summary, one per key; this run's replaces its key's."""
    references: dict[str, dict[str, Any]] = {}
    for name in sorted(stored or {}):
        value = stored[name]
        summary = value() if callable(value) else value
        references[summary.get("key", name)] = summary
    if fresh:
        references[fresh.get("key", "fresh")] = fresh
    return [references[key] for key in sorted(references)]


def tabulate_results(
    cv_summaries: Mapping[str, Callable[[], dict] | dict],
    reference_summaries: Mapping[str, Callable[[], dict] | dict] | None = None,
    fresh_reference: dict[str, Any] | None = None,
    **fresh: dict,
) -> tuple[pd.DataFrame, str, pd.DataFrame]:
    """The results table of every variant that has run.

    Args:
        cv_summaries: The results store: ``<variant>/<audio>__<corpus>`` ->
            summary (or its loader).
        reference_summaries: The reference regressor's store: ``<stems>__<corpus>``
            -> summary (or its loader); each variant is shown beside the one on
            its folds and audio.
        fresh_reference: The reference summary produced in this run, if any.
        **fresh: Variant -> summary produced in this run; listing them as inputs
            also makes Kedro build the table after those variants.

    Returns:
        ``results_table`` (one row per variant × audio × corpus), ``results_markdown``
        (per corpus: the paper's layout, paired differences from the mix baselines,
        the reference regressor beside each variant, audio side by side, every
        variant, differing settings; then the paper's published numbers) and
        ``results_differences``.
    """
    entries = collect_entries(cv_summaries, fresh)
    table = tabulate_rows(entries)
    differences = tabulate_differences(entries)
    parts = [
        "# Results",
        "",
        "Nested cross-validation. Each row is one variant on one audio (`mix`, the "
        "corpus' true stems `oracle`, or a separator's stems) and one corpus; rows "
        "of different corpora are never compared. Spread: *pooled* scores are "
        "mean ± sd over training repeats (seeds), *folds* scores mean ± sd over "
        "outer folds × repeats. Differences from the mix baselines are paired by "
        "test fold, with 95 % intervals corrected for overlapping training sets.",
    ]
    if table.empty:
        parts += ["", "No variant has run yet."]
    else:
        references = collect_references(reference_summaries, fresh_reference)
        groups = corpus_results(table, differences, entries, references)
        if len([g for g in groups if g.corpus != UNKNOWN_CORPUS]) > 1:
            parts += [
                "",
                f"**These results come from {len(groups)} corpora**; each has its "
                "own section, and no figure is compared across them.",
            ]
        for group in groups:
            parts += ["", _corpus_title(group)]
            for section in CORPUS_SECTIONS:
                text = section(group)
                if text:
                    parts += ["", text]
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
    return table, "\n".join(parts), differences


def _paper_sources() -> list[str]:
    return [
        "mix" if model != "EmoMucs" else "+".join(SOURCES)
        for model in PAPER_RESULTS["model"]
    ]


def tabulate_paper_results() -> pd.DataFrame:
    """The paper's published numbers as a table (see :data:`PAPER_RESULTS`)."""
    return PAPER_RESULTS.copy()


CONTRIBUTION_METHODS = {
    "mean": "at training mean",
    "silence": "silenced",
    "shapley": "head Shapley",
    "attention": "attention weight",
}
"""Contribution method → its column in the results table's section."""


def _ranking_cell(ranking: list[tuple[str, float]]) -> str:
    if not ranking:
        return "–"
    return " > ".join(f"{source} {value:.2f}" for source, value in ranking)


def _contribution_table(
    title: str,
    intro: str,
    summaries: dict[str, dict[str, Any]],
    cell: Callable[[dict[str, Any], str, str], str],
) -> str:
    """A section with one row per variant and dimension, one column per contribution
    method that some summary has; ``cell(summary, method, dimension)`` fills it."""
    methods = [
        m
        for m in CONTRIBUTION_METHODS
        if any(r["method"] == m for s in summaries.values() for r in s["pooled"])
    ]
    lines = [
        title,
        "",
        intro,
        "",
        "| variant | audio | dimension | "
        + " | ".join(CONTRIBUTION_METHODS[m] for m in methods)
        + " |",
        "|---|---|---|" + "---|" * len(methods),
    ]
    for name, summary in summaries.items():
        audio = summary.get("inputs", {}).get("audio", "unknown")
        for dim in DIMENSIONS:
            cells = [cell(summary, m, dim) for m in methods]
            lines.append(f"| {name} | {audio} | {dim} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def contributions_section(summaries: dict[str, dict[str, Any]]) -> str:
    """Markdown: for every multi-source variant and dimension, its sources ranked by
    each method's pooled contribution (see docs/contributions.md)."""
    return _contribution_table(
        "## Source contributions",
        "Sources ranked by pooled R² drop when each is set to its training mean or "
        "silenced, by their Shapley share of R² in the fusion head, and by mean "
        "attention weight (docs/contributions.md says how to read them).",
        summaries,
        lambda summary, method, dim: _ranking_cell(
            summary_ranking(summary, method, dim)
        ),
    )


def _rank_correlation(ranking: dict[str, float], shares: Mapping[str, Any]) -> str:
    sources = [s for s in ranking if s in shares]
    measured = [ranking[s] for s in sources]
    truth = [float(shares[s]) for s in sources]
    if len(sources) < 3 or np.ptp(measured) == 0 or np.ptp(truth) == 0:
        return "–"
    return f"{float(stats.spearmanr(measured, truth).statistic):+.2f}"


def agreement_section(
    summaries: dict[str, dict[str, Any]], true_shares: Mapping[str, Any]
) -> str | None:
    """Markdown: Spearman's ρ between each method's pooled source contributions and
    the corpus' true source shares (``contributions.json`` of a synthetic corpus),
    per variant and dimension; None when no summary has shares. Each summary is
    compared with the shares it carries (those of the corpus it ran on);
    ``true_shares`` (the dataset root's) serves summaries written before that.

    Only variants with three or more sources get a ρ: with two it is ±1 or undefined.
    """

    def shares_of(summary: dict[str, Any]) -> Mapping[str, Any]:
        # a keyed summary carries its own corpus' truth (None for real data); an
        # older one is taken to be of the corpus at the dataset root
        if "key" in summary:
            return summary.get("true_shares") or {}
        return true_shares

    def complete(shares: Mapping[str, Any]) -> bool:
        return all(isinstance(shares.get(d), Mapping) for d in DIMENSIONS)

    summaries = {n: s for n, s in summaries.items() if complete(shares_of(s))}
    if not summaries:
        return None
    return _contribution_table(
        "## Contributions against the corpus' true source shares",
        "Spearman's ρ between each method's pooled contribution of the sources and the "
        "share of each dimension the corpus put in them (`contributions.json`); 1 is "
        "the true order, – where it is undefined (fewer than three sources, or one "
        "side constant).",
        summaries,
        lambda summary, method, dim: _rank_correlation(
            dict(summary_ranking(summary, method, dim)), shares_of(summary)[dim]
        ),
    )


def add_contributions_section(
    markdown: str,
    contribution_summaries: dict[str, Any],
    corpus_contributions: Mapping[str, Any],
    *fresh: dict[str, Any],
) -> str:
    """The results markdown with a section ranking each multi-source variant's
    sources, before the published numbers; unchanged when none has run.

    Args:
        markdown: :func:`tabulate_results`' markdown.
        contribution_summaries: Stored contribution summaries, variant → summary.
        corpus_contributions: The dataset's true source shares per dimension
            (a synthetic corpus' ``contributions.json``; ``{}`` for real data):
            when given, a second section says how well each method recovers them.
        *fresh: This run's summaries (also orders the node after them).
    """
    summaries = collect_contribution_summaries(contribution_summaries, fresh)
    if not summaries:
        return markdown
    section = contributions_section(summaries) + "\n\n"
    agreement = agreement_section(summaries, corpus_contributions or {})
    if agreement:
        section += agreement + "\n\n"
    anchor = markdown.find("## Published")
    if anchor < 0:
        return markdown.rstrip("\n") + "\n\n" + section
    return markdown[:anchor] + section + markdown[anchor:]
