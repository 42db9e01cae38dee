"""Training benchmark: seconds per epoch of one split, and the paper grid's projected time.

``python -m benchmarks --only training`` (or ``python -m benchmarks.training
[--max-epochs 150] [--timed-epochs 3] [--threads 2]``).

With the paper's recipe (``conf/paper``: batch 64, lr 0.005, summed MSE, patience
15, no standardisation; C1D flattened, C2D with 32 filters), one inner split of
the paper's 5 × 5 folds of the corpus at hand is trained by the project's own
code (``ExperimentSpec.build`` + ``train_model``, and for freeze the nested CV's
frozen-sources path) for each kind of model the paper grid trains:

- **C1D** and **C2D** on one stem (the single-source models and the mix
  baselines), run to early stopping (capped at ``--max-epochs``): their seconds
  per epoch and the epochs they ran;
- **EmoMucs-C1D late full** and **EmoMucs-C2D late full** (four source networks
  and the fusion head): ``--timed-epochs`` epochs timed; the epochs they would
  run are taken to be their source network's (measured above), which the
  summary says;
- **EmoMucs late freeze** (the head on frozen source networks, their outputs
  computed once): to early stopping, with untrained source networks (the cost is
  the same; the epochs are a guess, said so).

The features are the newest ``data/04_feature/stems_log_mel.pt`` with
``data/03_primary/track_table.csv`` when this checkout has them, else seeded
random log-mels of the same shape (``--tracks``).

**Projection of the paper grid** (``--env paper``: 5 × 5 nested CV, 794 tracks, one
repeat): every network the paper's tables need (C1D-M and C2D-M; C1D and C2D on each
stem; EmoMucs-C1D and -C2D × early, mid, late × full, finetune, freeze: 28), plus
the four C2D-with-hidden-layer stems this project trains for C2D mid fusion, each
× 25 inner splits × (seconds per epoch of its kind, scaled from this split's
tracks to the paper split's 508 training + 127 validation tracks, since an epoch's
cost is linear in its tracks) × (epochs its kind ran here). Early and mid fusion
cost as late (the same four source networks; the head differs by a few thousand
weights) and finetune runs as many epochs as full: assumptions, written beside
the figure. Epochs at 794 tracks may differ from epochs at this corpus' size.

Writes ``training.json`` and ``training.md`` in the results folder.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from benchmarks.recipe import newest, recipe
from benchmarks.suite import ROOT, figure, machine, write_result
from emomucs import SOURCES
from emomucs.models.c2d import C2D, original_layout
from emomucs.training import (
    ExperimentSpec,
    TrainOptions,
    assign_folds,
    iter_splits,
    train_model,
)
from emomucs.training.data import input_kwargs, select_inputs, select_labels
from emomucs.training.nested_cv import _train_head_on_frozen_sources

QUICK_ARGS = ("--max-epochs", "2", "--timed-epochs", "1", "--tracks", "40")
QUICK_ARGS += ("--frames", "87")
PAPER_TRACKS, PAPER_FOLDS = 794, (5, 5)
SPLITS = PAPER_FOLDS[0] * PAPER_FOLDS[1]
KINDS = {
    # kind -> (spec parameters, how it trains)
    "C1D": ({"model": "C1D", "sources": ["drums"]}, "to early stopping"),
    "C2D": ({"model": "C2D", "sources": ["drums"]}, "to early stopping"),
    "EmoMucs-C1D late full": (
        {"model": "EmoMucs", "source_model": "C1D", "fusion": "late"},
        "timed epochs",
    ),
    "EmoMucs-C2D late full": (
        {"model": "EmoMucs", "source_model": "C2D", "fusion": "late"},
        "timed epochs",
    ),
    "EmoMucs-C1D late freeze": (
        {"model": "EmoMucs", "source_model": "C1D", "fusion": "late"},
        "freeze",
    ),
    "EmoMucs-C2D late freeze": (
        {"model": "EmoMucs", "source_model": "C2D", "fusion": "late"},
        "freeze",
    ),
}
EPOCHS_FROM = {"EmoMucs-C1D late full": "C1D", "EmoMucs-C2D late full": "C2D"}


def paper_grid() -> dict[str, int]:
    """Networks of the paper grid per measured kind (see the module docstring)."""
    fusions, strategies = 3, 2  # early, mid, late; full and finetune
    return {
        "C1D": 1 + len(SOURCES),  # C1D-M, C1D per stem
        # C2D-M, C2D per stem, C2D with a hidden layer per stem (for mid fusion)
        "C2D": 1 + 2 * len(SOURCES),
        "EmoMucs-C1D late full": fusions * strategies,
        "EmoMucs-C2D late full": fusions * strategies,
        "EmoMucs-C1D late freeze": fusions,
        "EmoMucs-C2D late freeze": fusions,
    }


def load_features(tracks: int, frames: int) -> tuple[dict, pd.DataFrame, str]:
    """The corpus' stem log-mels and labels, or seeded random ones of their shape."""
    features_dir = ROOT / "data" / "04_feature" / "stems_log_mel.pt"
    table_dir = ROOT / "data" / "03_primary" / "track_table.csv"
    if any(features_dir.glob("*/stems_log_mel.pt")) and any(
        table_dir.glob("*/track_table.csv")
    ):
        path = newest(features_dir)
        features = torch.load(path, weights_only=True)
        if features["values"].shape[-1] == frames:
            return (
                features,
                pd.read_csv(newest(table_dir)),
                f"{path.relative_to(ROOT)} ({len(features['music_ids'])} tracks)",
            )
    generator = torch.Generator().manual_seed(0)
    values = -80 * torch.rand(tracks, len(SOURCES), 40, frames, generator=generator)
    ids = torch.arange(tracks)
    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        {
            "musicId": ids.numpy(),
            "valence": rng.uniform(-1, 1, tracks),
            "arousal": rng.uniform(-1, 1, tracks),
        }
    )
    features = {
        "representation": "log_mel",
        "sources": list(SOURCES),
        "music_ids": ids,
        "values": values,
        "sample_rate": 22050,
        "settings": {},
    }
    return features, table, f"seeded random log-mels ({tracks} tracks, {frames} frames)"


def one_split(features: dict, table: pd.DataFrame, seed: int):
    """The first inner split of the paper's 5 × 5 folds of these tracks."""
    ids = np.intersect1d(features["music_ids"].numpy(), table["musicId"].to_numpy())
    return ids, iter_splits(assign_folds(ids, *PAPER_FOLDS, seed))[0]


def split_data(
    kind: str, features: dict, table: pd.DataFrame, settings: dict[str, Any]
) -> tuple[ExperimentSpec, tuple, tuple, Any]:
    """The kind's experiment and the inputs and labels of one paper split: ``(spec,
    train, validation, split)``."""
    params, _ = KINDS[kind]
    sources = params.get("sources", list(SOURCES))
    spec = ExperimentSpec.from_params(
        {**params, "sources": sources, "strategy": "full"}, settings["networks"]
    )
    ids, split = one_split(features, table, int(settings["training"]["seed"]))
    rows = {int(i): r for r, i in enumerate(ids)}
    inputs = select_inputs(features, sources, ids, kind)
    labels = select_labels(table, ids)

    def take(part: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor([rows[int(i)] for i in part])
        x = inputs[index]
        return (x if spec.model == "EmoMucs" else x[:, 0]), labels[index]

    return spec, take(split.train), take(split.validation), split


def train_kind(
    kind: str,
    features: dict,
    table: pd.DataFrame,
    settings: dict[str, Any],
    timed_epochs: int,
) -> dict[str, Any]:
    """Train one kind on one split with the paper's recipe; time it."""
    _, how = KINDS[kind]
    spec, train, validation, split = split_data(kind, features, table, settings)
    options = TrainOptions.from_params(settings["training"])
    if how == "timed epochs":
        options = replace(options, max_epochs=timed_epochs, patience=timed_epochs)
    # One untimed epoch on a few tracks first: the first steps allocate and pick
    # kernels, which would weigh on the few timed epochs.
    few = (train[0][:16], train[1][:16])
    train_model(
        spec.build(input_kwargs(features)),
        few,
        few,
        replace(options, max_epochs=1),
        label=f"{kind} warm-up",
    )
    torch.manual_seed(0)
    model = spec.build(input_kwargs(features))
    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    if how == "freeze":
        model.freeze_sources()
        result = _train_head_on_frozen_sources(
            model, train, validation, options, generator, kind
        )
    else:
        result = train_model(
            model, train, validation, options, generator=generator, label=kind
        )
    seconds = time.perf_counter() - started
    epochs = len(result.history)
    return {
        "how": how,
        "train_tracks": len(split.train),
        "validation_tracks": len(split.validation),
        "epochs": epochs,
        "best_epoch": result.best_epoch,
        "capped": how != "timed epochs" and epochs >= options.max_epochs,
        "seconds": seconds,
        "seconds_per_epoch": seconds / epochs,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


LAYOUT_KINDS = ("C2D", "EmoMucs-C2D late full")
"""Kinds timed both as built and in the original code's C2D layout."""


def with_original_layout(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with every C2D in it computed as the original code did."""
    if isinstance(model, C2D):
        return original_layout(model)
    for name, net in list(model.source_nets.items()):
        if isinstance(net, C2D):
            model.source_nets[name] = original_layout(net)
    return model


def compare_layouts(
    kind: str,
    features: dict,
    table: pd.DataFrame,
    settings: dict[str, Any],
    epochs: int,
) -> dict[str, Any]:
    """Seconds per epoch of ``kind`` as built (pool before ELU, channels-last) and in
    the original layout (ELU before pool, contiguous), alternated on one split, and
    the largest difference between the two models' first outputs (same weights)."""
    spec, train, validation, split = split_data(kind, features, table, settings)
    options = replace(
        TrainOptions.from_params(settings["training"]),
        max_epochs=epochs,
        patience=epochs,
    )
    torch.manual_seed(0)
    built = spec.build(input_kwargs(features)).eval()
    original = with_original_layout(spec.build(input_kwargs(features)))
    original.load_state_dict(built.state_dict())
    original.eval()
    with torch.no_grad():
        x = validation[0][:8]
        difference = float((built(x) - original(x)).abs().max())
    seconds = {"built": 0.0, "original": 0.0}
    # Alternate the two, twice each, so a change of load weighs on both alike.
    for _ in range(2):
        for name, make in (
            ("built", lambda: spec.build(input_kwargs(features))),
            (
                "original",
                lambda: with_original_layout(spec.build(input_kwargs(features))),
            ),
        ):
            torch.manual_seed(0)
            model = make()
            started = time.perf_counter()
            train_model(
                model,
                train,
                validation,
                options,
                generator=torch.Generator().manual_seed(0),
                label=f"{kind} ({name})",
            )
            seconds[name] += time.perf_counter() - started
    per_epoch = {name: value / (2 * epochs) for name, value in seconds.items()}
    return {
        "epochs_timed": 2 * epochs,
        "train_tracks": len(split.train),
        "seconds_per_epoch": per_epoch,
        "speed_up": per_epoch["original"] / per_epoch["built"],
        "largest_output_difference": difference,
    }


def project(kinds: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The paper grid's time from the measured kinds (module docstring)."""
    paper_train = PAPER_TRACKS * (PAPER_FOLDS[0] - 1) // PAPER_FOLDS[0]
    paper_val = paper_train // PAPER_FOLDS[1]
    paper_train -= paper_val
    rows = {}
    for kind, count in paper_grid().items():
        measured = kinds[kind]
        scale = (paper_train + paper_val) / (
            measured["train_tracks"] + measured["validation_tracks"]
        )
        epochs = kinds[EPOCHS_FROM.get(kind, kind)]["epochs"]
        per_model = measured["seconds_per_epoch"] * scale * epochs * SPLITS
        rows[kind] = {
            "networks": count,
            "seconds_per_epoch_at_paper_size": measured["seconds_per_epoch"] * scale,
            "epochs": epochs,
            "epochs_from": EPOCHS_FROM.get(kind, kind),
            "seconds": per_model * count,
        }
    total = sum(row["seconds"] for row in rows.values())
    return {
        "paper_split": {"train": paper_train, "validation": paper_val},
        "splits_per_network": SPLITS,
        "networks": sum(paper_grid().values()),
        "kinds": rows,
        "seconds": total,
        "hours": total / 3600,
    }


def markdown(result: dict[str, Any]) -> str:
    m, grid = result["machine"], result["projection"]
    lines = [
        "# Training: seconds per epoch and the paper grid's projected time",
        "",
        f"Paper recipe (`conf/paper`), one inner split of 5 × 5 folds of "
        f"{result['features']}; {result['threads']} torch threads, {m['cpus']} CPUs, "
        f"load average {m['load_average']} at the start, {result['load_after']} at "
        "the end (a shared machine: the seconds are pessimistic).",
        "",
        "| kind | trained | tracks (train + val) | epochs | s/epoch | s/epoch at "
        "508 + 127 | networks in the grid | projected hours |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind, row in result["kinds"].items():
        projected = grid["kinds"][kind]
        epochs = f"{row['epochs']}" + (" (cap)" if row["capped"] else "")
        if kind in EPOCHS_FROM:
            epochs += f"; grid uses {projected['epochs']} ({EPOCHS_FROM[kind]}'s)"
        lines.append(
            f"| {kind} | {row['how']} | {row['train_tracks']} + "
            f"{row['validation_tracks']} | {epochs} | {row['seconds_per_epoch']:.3f} | "
            f"{projected['seconds_per_epoch_at_paper_size']:.2f} | "
            f"{projected['networks']} | {projected['seconds'] / 3600:.2f} |"
        )
    lines += [
        "",
        f"**Projected paper grid** (`--env paper`, {PAPER_TRACKS} tracks, 5 × 5 nested "
        f"CV, one repeat, {grid['networks']} networks × {SPLITS} inner splits): "
        f"**{grid['hours']:.1f} h** on this machine at this load, one split after "
        "another (today's loop). How: seconds per epoch measured here × "
        f"({grid['paper_split']['train']} + {grid['paper_split']['validation']}) / "
        "(tracks here) × epochs run here × 25 splits × networks of that kind. "
        "Assumed: early and mid fusion cost as late; finetune runs as many epochs "
        "as full; late full as many as its source network; freeze's epochs come "
        "from untrained frozen sources; epochs at 794 tracks as at this corpus' "
        "size. Not counted: the outer folds' test predictions and the contribution "
        "stage (a few per cent).",
        "",
        "No stacked-splits training path (issue 12 item 1): trained in a stack, the "
        "splits' models cost as much per cell as one after another on a CPU (their "
        "time goes to memory-bound per-cell work and to C1D's convolution, which runs "
        "near this core's peak), so the speed-up comes from the C2D layout below.",
        "",
    ]
    if result.get("layouts"):
        lines += [
            "## C2D as built vs in the original code's layout",
            "",
            "The same split, the two alternated in one run, with the paper's recipe (C2D "
            "with 32 filters, batch 64) and the base's (8 filters, batch 16): as built "
            "(max-pool "
            "before the ELU, channels-last weights) vs the original (ELU before "
            "max-pool, contiguous NCHW weights). Same function: the largest output "
            "difference at equal weights is given.",
            "",
            "| kind | epochs timed | s/epoch as built | s/epoch original | speed-up | "
            "largest output difference |",
            "|---|---|---|---|---|---|",
        ]
        for kind, row in result["layouts"].items():
            lines.append(
                f"| {kind} | {row['epochs_timed']} | "
                f"{row['seconds_per_epoch']['built']:.3f} | "
                f"{row['seconds_per_epoch']['original']:.3f} | "
                f"{row['speed_up']:.2f}× | {row['largest_output_difference']:.1e} |"
            )
        lines.append("")
    return "\n".join(lines)


def summarize(result: dict[str, Any]) -> list[dict[str, Any]]:
    grid = result["projection"]
    layouts = [
        figure(
            f"{kind}: training as built vs the original C2D layout",
            round(row["seconds_per_epoch"]["built"], 3),
            "s/epoch",
            reference=round(row["seconds_per_epoch"]["original"], 3),
            ratio=round(row["speed_up"], 2),
            goal="≥ 5× (issue 12 item 1)",
            met=row["speed_up"] >= 5,
            note=f"{row['train_tracks']} training tracks, {row['epochs_timed']} "
            f"epochs alternated; outputs differ by "
            f"{row['largest_output_difference']:.1e}",
        )
        for kind, row in result.get("layouts", {}).items()
    ]
    if "hours" not in grid:
        return layouts
    rows = layouts + [
        figure(
            f"{kind}: seconds per epoch, one paper split",
            round(grid["kinds"][kind]["seconds_per_epoch_at_paper_size"], 3),
            "s/epoch at 508+127 tracks",
            note=f"{row['epochs']} epochs"
            + (" (cap)" if row["capped"] else "")
            + f", {row['how']}",
        )
        for kind, row in result["kinds"].items()
    ]
    rows.append(
        figure(
            "paper grid (--env paper, 794 tracks, 5 × 5), projected",
            round(grid["hours"], 2),
            "hours",
            goal="< 20 min on one GPU (issue 12 item 5)",
            met=None,
            note=f"{grid['networks']} networks × 25 splits, one after another, "
            "on this CPU; see training.md for how",
        )
    )
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-epochs", type=int, default=150)
    parser.add_argument("--timed-epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tracks", type=int, default=128, help="random features only")
    parser.add_argument("--frames", type=int, default=862, help="862: 20 s clips")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = machine()
    settings = recipe("paper", args.max_epochs, repeats=1)
    settings["training"].update(progress=False, device=args.device)
    features, table, described = load_features(args.tracks, args.frames)
    kinds = {}
    for kind in args.kinds:
        kinds[kind] = train_kind(kind, features, table, settings, args.timed_epochs)
        print(f"{kind}: {kinds[kind]}", flush=True)  # noqa: T201
    layouts = {}
    for recipe_name in ("paper", "base"):
        layout_settings = recipe(recipe_name, args.max_epochs, repeats=1)
        layout_settings["training"].update(progress=False, device=args.device)
        for kind in LAYOUT_KINDS:
            if kind in args.kinds:
                layouts[f"{kind}, {recipe_name} recipe"] = compare_layouts(
                    kind, features, table, layout_settings, args.timed_epochs
                )
    for kind, row in layouts.items():
        print(f"{kind} layouts: {row}", flush=True)  # noqa: T201
    missing = (set(KINDS) | set(EPOCHS_FROM.values())) - set(kinds)
    result = {
        "layouts": layouts,
        "features": described,
        "threads": args.threads,
        "device": args.device,
        "max_epochs": args.max_epochs,
        "timed_epochs": args.timed_epochs,
        "recipe": settings,
        "kinds": kinds,
        "projection": project(kinds) if not missing else None,
        "machine": start,
        "load_after": machine()["load_average"],
        "command": f"python -m benchmarks.training {' '.join(argv or [])}".strip(),
    }
    if result["projection"] is None:
        result["projection"] = {"kinds": {}, "note": "run every kind to project"}
        write_result("training", result, f"Partial run: {sorted(kinds)}\n")
        return result
    write_result("training", result, markdown(result))
    print(markdown(result))  # noqa: T201
    return result


if __name__ == "__main__":
    main()
