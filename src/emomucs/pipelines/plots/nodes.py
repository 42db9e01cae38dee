"""Plots: figures of the corpus, the separator and every trained variant.

Each node returns a :class:`matplotlib.figure.Figure` built without pyplot, so no
global figure state leaks between nodes or threads; the catalog
(``matplotlib.MatplotlibDataset``) writes the PNG and kedro-mlflow or the project
hook logs it to MLflow.
"""

from __future__ import annotations

from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from emomucs import SOURCES
from emomucs.interpret import collect_contribution_summaries
from emomucs.training.metrics import (
    DIMENSIONS,
    LOWER_IS_BETTER,
    METRIC_COLUMNS,
    attention_column,
    metric_name,
)

QUADRANTS = {
    (1, 1): "excited, happy",
    (-1, 1): "tense, angry",
    (-1, -1): "sad, depressed",
    (1, -1): "calm, relaxed",
}
"""Russell's circumplex names of the four valence–arousal quadrants."""


def _fold_colour(options: dict[str, Any], fold: int) -> tuple[float, ...]:
    cmap = mpl.colormaps[options.get("fold_colormap", "tab10")]
    return cmap(int(fold) % cmap.N)


def _limits(*columns: pd.Series) -> tuple[float, float]:
    """[-1, 1] widened to whatever predictions overshoot it."""
    reach = max(1.0, *(float(np.nanmax(np.abs(c))) for c in columns if len(c)))
    return -1.05 * reach, 1.05 * reach


def plot_predictions(
    cv_predictions: pd.DataFrame, cv_summary: dict[str, Any], options: dict[str, Any]
) -> Figure:
    """Predicted against true valence and arousal of one variant's out-of-fold
    predictions, coloured by outer fold.

    Args:
        cv_predictions: ``musicId``, ``outer_fold``, ``valence``, ``arousal``,
            ``valence_pred``, ``arousal_pred``.
        cv_summary: The variant's summary (its ``label`` and ``metrics``).
        options: ``point_size``, ``alpha``, ``fold_colormap``.

    Returns:
        One panel per dimension, with the mean ± sd and pooled scores.
    """
    label = cv_summary["label"]
    missing = {"outer_fold", *DIMENSIONS, *(f"{d}_pred" for d in DIMENSIONS)} - set(
        cv_predictions.columns
    )
    if missing:
        raise ValueError(f"{label}: cv_predictions lacks columns {sorted(missing)}")
    if cv_predictions.empty:
        raise ValueError(f"{label}: cv_predictions has no rows to plot")
    metrics = cv_summary["metrics"]
    folds = sorted(int(k) for k in cv_predictions["outer_fold"].unique())
    fig = Figure(figsize=(10, 5.2), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, dim in zip(axes, DIMENSIONS, strict=True):
        truth, guess = cv_predictions[dim], cv_predictions[f"{dim}_pred"]
        for fold in folds:
            part = cv_predictions[cv_predictions["outer_fold"] == fold]
            ax.scatter(
                part[dim],
                part[f"{dim}_pred"],
                s=options.get("point_size", 16),
                alpha=options.get("alpha", 0.75),
                color=_fold_colour(options, fold),
                edgecolors="none",
                label=f"outer fold {fold}",
            )
        low, high = _limits(truth, guess)
        ax.plot([low, high], [low, high], color="0.3", lw=0.8, ls="--", label="y = x")
        ax.axhline(0, color="0.85", lw=0.6, zorder=0)
        ax.axvline(0, color="0.85", lw=0.6, zorder=0)
        ax.set(xlim=(low, high), ylim=(low, high), aspect="equal")
        ax.set_xlabel(f"true {dim}")
        ax.set_ylabel(f"predicted {dim}")
        mean, sd, pooled = (metrics[s] for s in ("mean", "sd", "pooled"))
        ax.set_title(
            f"{dim.capitalize()}: RMSE {mean[f'rmse_{dim}']:.3f} ± "
            f"{sd[f'rmse_{dim}']:.3f}, R² {mean[f'r2_{dim}']:.3f} ± {sd[f'r2_{dim}']:.3f}",
            fontsize="medium",
        )
        ax.text(
            0.03,
            0.97,
            f"pooled RMSE {pooled[f'rmse_{dim}']:.3f}\npooled R² {pooled[f'r2_{dim}']:.3f}",
            transform=ax.transAxes,
            va="top",
            fontsize="small",
            bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8, "lw": 0},
        )
    axes[1].legend(loc="lower right", fontsize="small", framealpha=0.8)
    fig.suptitle(
        f"{label}: out-of-fold predictions, {len(cv_predictions)} tracks, "
        f"{len(folds)} outer folds (mean ± sd over folds)"
    )
    return fig


def plot_attention_weights(
    cv_predictions: pd.DataFrame, cv_summary: dict[str, Any], options: dict[str, Any]
) -> Figure:
    """Mean attention weight of each source per dimension, over a variant's
    out-of-fold tracks (attention fusion).

    Args:
        cv_predictions: With a column ``attention_<dimension>_<source>`` per
            dimension and source (:func:`~emomucs.training.metrics.attention_column`).
        cv_summary: The variant's summary (its ``label`` and ``experiment``'s
            ``sources``).
        options: ``fold_colormap`` (the colour of each outer fold's mean).

    Returns:
        One panel per dimension: a bar per source (mean over tracks, whisker ± sd
        over tracks), each outer fold's mean as a dot, and the uniform weight
        1 / n_sources as a dashed line.
    """
    label = cv_summary["label"]
    sources = list(cv_summary["experiment"]["sources"])
    columns = {(d, s): attention_column(d, s) for d in DIMENSIONS for s in sources}
    missing = sorted(set(columns.values()) - set(cv_predictions.columns))
    if missing:
        raise ValueError(
            f"{label}: cv_predictions lacks attention weights {missing} "
            "(only attention fusion writes them)"
        )
    if cv_predictions.empty:
        raise ValueError(f"{label}: cv_predictions has no rows to plot")
    folds = sorted(int(k) for k in cv_predictions["outer_fold"].unique())
    positions = np.arange(len(sources))
    fig = Figure(figsize=(4 + 1.2 * len(sources), 4.2), layout="constrained")
    axes = fig.subplots(1, len(DIMENSIONS), sharey=True)
    for ax, dim in zip(axes, DIMENSIONS, strict=True):
        weights = cv_predictions[[columns[dim, s] for s in sources]]
        ax.bar(
            positions,
            weights.mean().to_numpy(),
            yerr=weights.std(ddof=0).to_numpy(),
            color="0.75",
            edgecolor="0.3",
            capsize=4,
            error_kw={"ecolor": "0.35", "elinewidth": 1},
        )
        for fold in folds:
            part = weights[cv_predictions["outer_fold"] == fold]
            ax.scatter(
                positions,
                part.mean().to_numpy(),
                color=_fold_colour(options, fold),
                s=18,
                zorder=3,
                label=f"outer fold {fold}",
            )
        ax.axhline(1 / len(sources), color="0.3", lw=0.8, ls="--", label="uniform")
        ax.set_xticks(positions, sources)
        ax.set_ylim(0, 1)
        ax.set_title(dim.capitalize(), fontsize="medium")
    axes[0].set_ylabel("attention weight (mean ± sd over tracks)")
    axes[-1].legend(loc="upper right", fontsize="small", framealpha=0.8)
    fig.suptitle(f"{label}: attention over sources, {len(cv_predictions)} tracks")
    return fig


def _network_and_source(key: str) -> tuple[str, str]:
    """``c2d_hidden_drums`` -> (``c2d_hidden``, ``drums``)."""
    network, _, source = key.rpartition("_")
    if not network or source not in SOURCES:
        raise ValueError(
            f"learning curves: {key!r} is not <network>_<source> with a source in "
            f"{list(SOURCES)}"
        )
    return network, source


def plot_source_learning_curves(
    options: dict[str, Any], **training_logs: pd.DataFrame
) -> Figure:
    """Training and validation loss per epoch of the single-source models.

    Args:
        options: ``fold_colormap``.
        **training_logs: ``<network>_<source>`` (e.g. ``c1d_vocals``) -> that
            single-source variant's ``training_log`` (``outer_fold``,
            ``inner_split``, ``epoch``, ``train_loss``, ``val_loss``,
            ``best_epoch``, ``selected``).

    Returns:
        A grid: a row per network, a column per source. Thin lines are the
        validation loss of each inner split (dot: its best epoch); thick lines the
        median over splits of validation (solid) and training (dashed) loss.
    """
    if not training_logs:
        raise ValueError("learning curves: no single-source training logs given")
    keyed = {_network_and_source(key): log for key, log in training_logs.items()}
    networks = list(dict.fromkeys(network for network, _ in sorted(keyed)))
    sources = [s for s in SOURCES if any(s == source for _, source in keyed)]
    fig = Figure(
        figsize=(max(8.0, 3.4 * len(sources) + 0.6), 2.9 * len(networks) + 1.1),
        layout="constrained",
    )
    axes = np.atleast_2d(fig.subplots(len(networks), len(sources), sharey=True))
    for row, network in enumerate(networks):
        for col, source in enumerate(sources):
            ax = axes[row, col]
            log = keyed.get((network, source))
            ax.set_yscale("log")
            ax.grid(True, which="major", color="0.9", lw=0.6)
            if log is None or log.empty:
                ax.text(0.5, 0.5, "not run", ha="center", transform=ax.transAxes)
                continue
            # one line per trained model: (repeat,) outer fold, inner split
            keys = [c for c in ("repeat", "outer_fold", "inner_split") if c in log]
            for _, split in log.groupby(keys):
                outer = int(split["outer_fold"].iloc[0])
                colour = _fold_colour(options, outer)
                ax.plot(
                    split["epoch"], split["val_loss"], color=colour, lw=0.7, alpha=0.45
                )
                best = split[split["epoch"] == split["best_epoch"]]
                ax.plot(best["epoch"], best["val_loss"], "o", color=colour, ms=3)
            median = log.groupby("epoch")[["train_loss", "val_loss"]].median()
            ax.plot(
                median.index, median["val_loss"], color="k", lw=1.8, label="validation"
            )
            ax.plot(
                median.index,
                median["train_loss"],
                color="k",
                lw=1.4,
                ls="--",
                label="training",
            )
            n_splits = log.groupby(keys).ngroups
            ax.set_title(
                f"{network.upper()} · {source} ({n_splits} splits)", fontsize="medium"
            )
            ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
            if row == len(networks) - 1:
                ax.set_xlabel("epoch")
            if col == 0:
                ax.set_ylabel("MSE per value")
    axes[0, 0].legend(
        fontsize="small", title="median over splits", title_fontsize="small"
    )
    fig.suptitle(
        "Learning curves of the single-source models\n"
        "thin: validation loss of each inner split (colour: outer fold; dot: its best "
        "epoch); thick: median over splits",
        fontsize="medium",
    )
    return fig


def _scores(table: pd.DataFrame, metric: str) -> np.ndarray:
    """Each variant's mean score mapped to [0, 1] within its column, 1 the best."""
    values = table[f"{metric}_mean"].to_numpy(dtype=float)
    low, high = np.nanmin(values), np.nanmax(values)
    if not np.isfinite(high - low) or high == low:
        return np.full(values.shape, 0.5)
    scaled = (values - low) / (high - low)
    return 1 - scaled if metric in LOWER_IS_BETTER else scaled


def plot_results_heatmap(
    results_table: pd.DataFrame, options: dict[str, Any]
) -> Figure:
    """The results table as a heat-map: a row per variant, a column per metric.

    Colours are ranked within each column (RMSE: lower is better, R²: higher is
    better), so the best variant of every metric has the same colour; cells show
    mean ± sd over outer folds.

    Args:
        results_table: The reporting pipeline's table (``variant``, ``label`` and
            ``<metric>_mean`` / ``<metric>_sd`` columns).
        options: ``colormap``.
    """
    needed = {"variant", "label"} | {
        f"{m}_{s}" for m in METRIC_COLUMNS for s in ("mean", "sd")
    }
    missing = needed - set(results_table.columns)
    if missing:
        raise ValueError(f"results_table lacks columns {sorted(missing)}")
    if results_table.empty:
        raise ValueError(
            "results_table has no variants to plot; run an experiment first"
        )
    order = [c for c in ("variant", "key") if c in results_table]
    table = results_table.sort_values(order, ignore_index=True)
    cmap = mpl.colormaps[options.get("colormap", "RdYlGn")]
    colours = np.stack([cmap(_scores(table, m)) for m in METRIC_COLUMNS], axis=1)
    fig = Figure(figsize=(10, 1.6 + 0.42 * len(table)), layout="constrained")
    ax = fig.subplots()
    ax.imshow(colours, aspect="auto", interpolation="nearest")
    for row, (_, entry) in enumerate(table.iterrows()):
        for col, metric in enumerate(METRIC_COLUMNS):
            red, green, blue = colours[row, col, :3]
            dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
            ax.text(
                col,
                row,
                f"{entry[f'{metric}_mean']:.3f} ± {entry[f'{metric}_sd']:.3f}",
                ha="center",
                va="center",
                fontsize="small",
                color="white" if dark else "black",
            )
    ax.set_xticks(range(len(METRIC_COLUMNS)), [metric_name(m) for m in METRIC_COLUMNS])
    ax.xaxis.tick_top()
    names = [
        v if v == lab else f"{v}  ({lab})"
        for v, lab in zip(table["variant"], table["label"])
    ]
    # a variant run on several audios or corpora has a row for each: name them
    if "audio" in table and table["variant"].duplicated().any():
        names = [f"{n}  [{a}]" for n, a in zip(names, table["audio"])]
    ax.set_yticks(range(len(table)), names)
    ax.set_xticks(np.arange(-0.5, len(METRIC_COLUMNS)), minor=True)
    ax.set_yticks(np.arange(-0.5, len(table)), minor=True)
    ax.grid(which="minor", color="white", lw=1.5)
    ax.tick_params(which="both", length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    bar = fig.colorbar(
        mpl.cm.ScalarMappable(cmap=cmap), ax=ax, orientation="horizontal", shrink=0.5
    )
    bar.set_ticks([0, 1], labels=["worst in column", "best in column"])
    ax.set_title("Results: mean ± sd over outer folds (colour ranked per column)")
    return fig


def plot_separation_sdr(sdr_summary: dict[str, Any], options: dict[str, Any]) -> Figure:
    """SDR per source of the separator against the mix-as-estimate floor.

    Args:
        sdr_summary: :func:`emomucs.separation.sdr.summarize_sdr`'s output
            (``sources`` -> ``model_db`` / ``floor_db`` / ``gain_db``, ``mean``,
            ``tracks``, ``per_track``), optionally with a ``separator`` name; or
            ``{"available": false, "reason": ...}`` for a corpus without true stems.
        options: ``point_size``.

    Returns:
        Bars of the mean SDR per source; dots are the separator's SDR per track.
    """
    name = sdr_summary.get("separator")
    title = f"Separator {name}" if name else "Separator"
    if sdr_summary.get("available") is False:
        # A corpus without true stems (real PMEmo) has nothing to score against.
        fig = Figure(figsize=(7.5, 2.0), layout="constrained")
        ax = fig.subplots()
        ax.axis("off")
        ax.text(
            0.5,
            0.5,
            f"SDR not available: {sdr_summary.get('reason', 'unknown')}",
            ha="center",
            va="center",
            wrap=True,
        )
        ax.set_title(f"{title}: SDR per source", fontsize="medium")
        return fig
    per_source = sdr_summary.get("sources") or {}
    if not per_source:
        raise ValueError("separator SDR: the summary has no sources")
    sources = [s for s in SOURCES if s in per_source] + [
        s for s in per_source if s not in SOURCES
    ]
    x = np.arange(len(sources))
    width = 0.38
    model = [per_source[s]["model_db"] for s in sources]
    floor = [per_source[s]["floor_db"] for s in sources]
    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.subplots()
    ax.bar(x - width / 2, model, width, color="tab:blue", label="separator")
    ax.bar(x + width / 2, floor, width, color="0.7", label="mix as the estimate")
    per_track = sdr_summary.get("per_track") or {}
    rng = np.random.default_rng(0)  # jitter only; fixed so the figure is reproducible
    tops = []
    for i, source in enumerate(sources):
        values = [t[source]["model_db"] for t in per_track.values() if source in t]
        jitter = rng.uniform(-width / 4, width / 4, len(values))
        ax.scatter(
            x[i] - width / 2 + jitter,
            values,
            s=options.get("point_size", 16) * 0.6,
            color="navy",
            alpha=0.6,
            zorder=3,
            edgecolors="none",
        )
        tops.append(max([model[i], floor[i], 0.0, *values]))
    for i, source in enumerate(sources):
        ax.annotate(
            f"gain {per_source[source]['gain_db']:+.1f} dB",
            (x[i], tops[i]),
            xytext=(0, 5),
            textcoords="offset points",
            ha="center",
            fontsize="small",
        )
    ax.margins(y=0.12)
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_xticks(x, sources)
    ax.set_ylabel("SDR (dB)")
    ax.legend(fontsize="small", loc="lower right")
    mean = sdr_summary.get("mean", {})
    ax.set_title(
        f"{title}\nSDR per source on {sdr_summary.get('tracks', len(per_track))} tracks: "
        f"mean {mean.get('model_db', np.mean(model)):.1f} dB, mix as the estimate "
        f"{mean.get('floor_db', np.mean(floor)):.1f} dB (dots: tracks)",
        fontsize="medium",
    )
    return fig


def plot_emotion_plane(track_table: pd.DataFrame, options: dict[str, Any]) -> Figure:
    """The corpus in the valence–arousal plane, with each dimension's histogram.

    Args:
        track_table: ``musicId``, ``valence``, ``arousal`` (both in [-1, 1]).
        options: ``point_size``, ``alpha``.
    """
    missing = {"musicId", "valence", "arousal"} - set(track_table.columns)
    if missing:
        raise ValueError(f"track_table lacks columns {sorted(missing)}")
    if track_table.empty:
        raise ValueError("track_table has no tracks to plot")
    valence, arousal = track_table["valence"], track_table["arousal"]
    outside = track_table[(valence.abs() > 1) | (arousal.abs() > 1)]
    if not outside.empty:
        raise ValueError(
            f"track {int(outside['musicId'].iloc[0])}: valence/arousal outside [-1, 1]"
        )
    fig = Figure(figsize=(6.6, 6.6), layout="constrained")
    grid = fig.add_gridspec(2, 2, width_ratios=(4, 1), height_ratios=(1, 4))
    ax = fig.add_subplot(grid[1, 0])
    top = fig.add_subplot(grid[0, 0], sharex=ax)
    right = fig.add_subplot(grid[1, 1], sharey=ax)
    ax.scatter(
        valence,
        arousal,
        s=options.get("point_size", 16),
        alpha=options.get("alpha", 0.75),
        color="tab:purple",
        edgecolors="none",
    )
    ax.axhline(0, color="0.6", lw=0.8)
    ax.axvline(0, color="0.6", lw=0.8)
    for (sx, sy), name in QUADRANTS.items():
        ax.text(
            0.97 * sx,
            0.97 * sy,
            name,
            ha="right" if sx > 0 else "left",
            va="top" if sy > 0 else "bottom",
            color="0.45",
            fontsize="small",
        )
    # no equal aspect: it would shrink the panel away from its histograms
    ax.set(xlim=(-1.05, 1.05), ylim=(-1.05, 1.05))
    ax.set_xlabel("valence")
    ax.set_ylabel("arousal")
    bins = np.linspace(-1, 1, 21)
    top.hist(valence, bins=bins, color="tab:purple", alpha=0.7)
    right.hist(
        arousal, bins=bins, color="tab:purple", alpha=0.7, orientation="horizontal"
    )
    top.tick_params(labelbottom=False)
    right.tick_params(labelleft=False)
    top.set_ylabel("tracks")
    right.set_xlabel("tracks")
    r = float(np.corrcoef(valence, arousal)[0, 1]) if len(track_table) > 1 else np.nan
    top.set_title(
        f"{len(track_table)} tracks; valence {valence.mean():+.2f} ± {valence.std():.2f}, "
        f"arousal {arousal.mean():+.2f} ± {arousal.std():.2f}, r = {r:.2f}",
        fontsize="medium",
    )
    fig.suptitle("The corpus in the valence–arousal plane")
    return fig


CONTRIBUTION_AXES = {
    "silence": "R² drop, source silenced",
    "mean": "R² drop, source at its training mean",
    "shapley": "Shapley share of R² (fusion head)",
    "attention": "mean attention weight",
}
"""Contribution method → what its panel's bars measure."""

DIMENSION_COLOURS = {"valence": "tab:orange", "arousal": "tab:blue"}


def _contribution_bars(
    ax, values: dict[tuple[str, str], float], sources: list[str], dots=None
) -> None:
    """Bars per source, one per dimension; ``dots`` (same keys) are per-fold values."""
    x = np.arange(len(sources))
    width = 0.38
    for d, dim in enumerate(DIMENSIONS):
        offset = (d - 0.5) * width
        heights = [values.get((s, dim), np.nan) for s in sources]
        ax.bar(x + offset, heights, width, color=DIMENSION_COLOURS[dim], label=dim)
        for i, source in enumerate(sources):
            points = (dots or {}).get((source, dim), [])
            ax.scatter(
                np.full(len(points), x[i] + offset),
                points,
                s=10,
                color="k",
                alpha=0.6,
                zorder=3,
                edgecolors="none",
            )
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_xticks(x, sources)


def _ordered_sources(names) -> list[str]:
    names = set(names)
    return [s for s in SOURCES if s in names] + sorted(names - set(SOURCES))


def plot_source_contributions(
    contributions: pd.DataFrame, options: dict[str, Any]
) -> Figure:
    """Each source's contribution to one variant, a panel per method.

    Args:
        contributions: :func:`emomucs.interpret.source_contributions`' table.
        options: Unused; the plots' shared options.

    Returns:
        Bars: pooled value per source for valence and arousal (averaged over
        repeats); dots: the outer folds.
    """
    rows = contributions[contributions["repeat"] == -1]
    if rows.empty:
        raise ValueError("contributions: no rows to plot")
    label = str(rows["label"].iloc[0])
    methods = [m for m in CONTRIBUTION_AXES if m in set(rows["method"])]
    sources = _ordered_sources(rows["source"])
    fig = Figure(figsize=(max(7.0, 3.6 * len(methods)), 4.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(methods)))
    for ax, method in zip(axes, methods, strict=True):
        part = rows[rows["method"] == method]
        column = "mean_weight" if method == "attention" else "r2_drop"
        pooled = part[part["scope"] == "pooled"]
        folds = part[part["scope"] == "fold"]
        values = {
            (s, d): v
            for s, d, v in zip(pooled["source"], pooled["dimension"], pooled[column])
        }
        dots = {
            key: group[column].to_list()
            for key, group in folds.groupby(["source", "dimension"])
        }
        _contribution_bars(ax, values, sources, dots)
        ax.set_title(method, fontsize="medium")
        ax.set_ylabel(CONTRIBUTION_AXES[method])
    axes[0].legend(fontsize="small")
    fig.suptitle(
        f"{label}: contribution of each source (bars: pooled over outer folds; "
        "dots: outer folds)",
        fontsize="medium",
    )
    return fig


def plot_contributions_overview(
    contribution_summaries: dict[str, Any],
    options: dict[str, Any],
    *fresh: dict[str, Any],
) -> Figure:
    """Every multi-source variant's sources side by side, a panel per variant.

    Bars are the pooled R² drop when the source is set to its training mean
    (the ``mean`` ablation), for valence and arousal.

    Args:
        contribution_summaries: Stored contribution summaries, variant → summary.
        options: ``overview_columns`` (panels per row, default 3).
        *fresh: This run's summaries (also orders the figure after them).
    """
    summaries = collect_contribution_summaries(contribution_summaries, fresh)
    if not summaries:
        fig = Figure(figsize=(7.5, 2.0), layout="constrained")
        ax = fig.subplots()
        ax.axis("off")
        ax.text(0.5, 0.5, "No multi-source variant has run yet", ha="center")
        return fig
    n_columns = min(int(options.get("overview_columns", 3)), len(summaries))
    n_rows = -(-len(summaries) // n_columns)
    fig = Figure(figsize=(4.2 * n_columns, 3.2 * n_rows + 0.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(n_rows, n_columns, squeeze=False)).ravel()
    for ax, (name, summary) in zip(axes, summaries.items()):
        rows = [r for r in summary["pooled"] if r["method"] == "mean"]
        values = {(r["source"], r["dimension"]): r["r2_drop"] for r in rows}
        _contribution_bars(ax, values, _ordered_sources(r["source"] for r in rows))
        ax.set_title(name, fontsize="small")
    for ax in axes[len(summaries) :]:
        ax.axis("off")
    axes[0].legend(fontsize="small")
    axes[0].set_ylabel("pooled R² drop")
    fig.suptitle(
        "Contribution of each source: pooled R² drop when it is set to its "
        "training mean"
    )
    return fig
