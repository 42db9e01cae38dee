"""Recipe benchmark: networks vs a ridge on the same inputs, same folds, same stems.

Run after ``kedro run --pipeline=synthetic_corpus`` and
``kedro run --pipeline=features --params separation.separator.kind=oracle``::

    python -m benchmarks.recipe [--features PATH] [--track-table PATH]
        [--outer 3] [--inner 2] [--stems drums bass other vocals]
        [--max-epochs 200] [--threads 1]

It reads the newest ``data/04_feature/stems_log_mel.pt`` and
``data/03_primary/track_table.csv`` (or the given files), draws nested folds as the
pipeline does (``cv.seed``), and scores, per dimension (pooled out-of-fold R²):

- a **ridge** on each stem's per-band log-mel mean and sd (and on all stems at once),
  trained like the networks: on each inner split's training part (standardised
  there), its alpha chosen on that split's validation part, and the split with the
  lowest validation MSE predicting the outer fold's test tracks;
- **C1D** (or with ``--network C2D``, **C2D**) on each stem and **EmoMucs late
  fusion** of that network (freeze and full) with the
  **paper** recipe (``conf/paper``: flatten, summed MSE, lr 0.005, batch 64, no
  standardisation), the **base** recipe (``conf/base``), **base-flatten** (base
  with the paper's flattening C1D, isolating the pooling), **base-c2d16**,
  **base-c2d32** (base with C2D's 16 or the paper's 32 filters) and
  **base-lr0.001** (base with Adam's learning rate at 0.001) and **base-c2d-rows5**
  (C2D pooling over time only, 5 frequency rows kept), each read from the
  environment's ``training`` and ``networks`` blocks, with ``max_epochs`` capped at
  ``--max-epochs`` (200; the paper's 10000 would run for hours; the cap is recorded,
  with how many splits reached it) and ``training.repeats`` set to ``--repeats`` (1)
  for every recipe.

On a shared machine, run the recipes as separate processes and merge them::

    python -m benchmarks.recipe --recipes paper --output recipe-paper &
    python -m benchmarks.recipe --recipes base-flatten --output recipe-flatten &
    python -m benchmarks.recipe --recipes base --output recipe-base
    python -m benchmarks.recipe --merge \\
        benchmarks/results/recipe-{paper,flatten,base}.json

Writes ``benchmarks/results/recipe.json`` and ``recipe.md``. Timings are seconds on
this machine at its current load (recorded): compare them as ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from sklearn.linear_model import Ridge

from benchmarks.suite import ROOT, figure, results_dir
from emomucs import SOURCES
from emomucs.training import CVOptions, ExperimentSpec, run_nested_cv
from emomucs.training.data import describe_inputs, select_inputs, select_labels
from emomucs.training.folds import assign_folds, iter_splits
from emomucs.training.metrics import DIMENSIONS, score

log = logging.getLogger("recipe")
RECIPES = (
    "paper",
    "base-flatten",
    "base",
    "base-c2d16",
    "base-c2d32",
    "base-lr0.001",
    "base-c2d-rows5",
)
"""Columns: the paper env, base's training with the paper's C1D (flatten: base's
recipe before C1D pooled over time), base, base with C2D's 16 or 32 filters (the
paper's 32; base has 8), base with Adam's learning rate at 0.001 (base: 0.005), and
base with C2D averaging over time only, keeping the 5 frequency rows its first three
pools leave (base: all 5 blocks pool frequency, then a global average)."""
VARIANT_RECIPES = {
    "base-flatten": {"networks": {"C1D": {"pooling": "flatten"}}},
    "base-c2d16": {"networks": {"C2D": {"n_filters": 16}}},
    "base-c2d32": {"networks": {"C2D": {"n_filters": 32}}},
    "base-lr0.001": {"training": {"learning_rate": 0.001}},
    "base-c2d-rows5": {
        "networks": {"C2D": {"pooling": "time", "freq_pools": [2, 2, 2, 1, 1]}}
    },
}
"""Recipes that are base with some network arguments or training settings changed."""
ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0)


def newest(path: Path) -> Path:
    """The newest version of a Kedro-versioned dataset, or ``path`` itself."""
    if path.is_file():
        return path
    versions = sorted(path.glob(f"*/{path.name}"))
    if not versions:
        raise SystemExit(f"{path}: no version found; run the features pipeline first")
    return versions[-1]


def recipe(name: str, max_epochs: int, repeats: int) -> dict:
    """An environment's ``training`` block and ``networks`` block (base under it);
    the :data:`VARIANT_RECIPES` are base with their changes."""
    env = "base" if name in VARIANT_RECIPES else name
    base = ROOT / "conf" / "base" / "parameters"
    blocks = {}
    for file, key in (("training.yml", "training"), ("experiments.yml", "networks")):
        values = yaml.safe_load((base / file).read_text())[key]
        override = ROOT / "conf" / env / "parameters" / file
        if env != "base" and override.exists():
            values = yaml.safe_load(override.read_text()).get(key, values)
        blocks[key] = values
    changes = VARIANT_RECIPES.get(name, {})
    networks = blocks["networks"]
    for network, arguments in changes.get("networks", {}).items():
        networks[network] = {**networks.get(network, {}), **arguments}
    training = {
        **blocks["training"],
        **changes.get("training", {}),
        "max_epochs": min(int(blocks["training"]["max_epochs"]), max_epochs),
        "repeats": repeats,  # the same for every recipe, so the columns compare
        "cache_dir": None,
        "progress": False,
        "device": "cpu",
        "num_threads": None,
    }
    return {"training": training, "networks": blocks["networks"]}


def stem_statistics(values: torch.Tensor) -> np.ndarray:
    """Per-band mean and sd over time of each source, ``(tracks, features)``."""
    return torch.cat([values.mean(-1), values.std(-1)], -1).flatten(1).numpy()


class Scaling:
    """Standardise with training statistics, clipped to the training range.

    A band that is (nearly) constant in the training part has a tiny sd; without
    the clip, a test track with energy there gets a huge value and a huge
    prediction (pure tones in tests/training/synthetic.py do this).
    """

    def __init__(self, train: np.ndarray) -> None:
        self.mean, self.sd = train.mean(0), train.std(0) + 1e-6
        scaled = (train - self.mean) / self.sd
        self.low, self.high = scaled.min(0), scaled.max(0)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.clip((x - self.mean) / self.sd, self.low, self.high)


def ridge_predictions(features, table, folds, sources) -> pd.DataFrame:
    """Out-of-fold predictions of the ridge, chosen as the networks are."""
    by_outer: dict[int, list] = {}
    for split in iter_splits(folds):
        x = {
            part: stem_statistics(select_inputs(features, sources, ids))
            for part, ids in (
                ("train", split.train),
                ("validation", split.validation),
                ("test", split.test),
            )
        }
        scale = Scaling(x["train"])
        y_train = select_labels(table, split.train).numpy()
        y_val = select_labels(table, split.validation).numpy()
        best = None
        for alpha in ALPHAS:
            model = Ridge(alpha=alpha).fit(scale(x["train"]), y_train)
            guess = model.predict(scale(x["validation"]))
            loss = float(np.mean((guess - y_val) ** 2))
            if best is None or loss < best[0]:
                best = (loss, model, scale(x["test"]), split.test)
        by_outer.setdefault(split.outer, []).append(best)
    parts = []
    for outer, candidates in by_outer.items():
        _, model, x_test, test = min(candidates, key=lambda c: c[0])
        guess = model.predict(x_test)
        truth = select_labels(table, test).numpy()
        part = pd.DataFrame({"musicId": test, "outer_fold": outer})
        for d, dim in enumerate(DIMENSIONS):
            part[dim], part[f"{dim}_pred"] = truth[:, d], guess[:, d]
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def r2(predictions: pd.DataFrame) -> dict[str, float]:
    scores = score(predictions)
    return {dim: round(float(scores[f"r2_{dim}"]), 3) for dim in DIMENSIONS}


def run_network(spec, features, table, folds, settings, pretrained=None) -> dict:
    """Nested CV of one variant under one recipe: R², seconds and epochs."""
    options = CVOptions.from_params(settings["training"])
    started = time.perf_counter()
    result = run_nested_cv(spec, features, table, folds, options, pretrained)
    seconds = time.perf_counter() - started
    per_split = result.log.groupby(["outer_fold", "inner_split"])
    epochs = per_split["epoch"].max()
    return {
        "r2": r2(result.predictions),
        "seconds": round(seconds, 1),
        "epochs_run": round(float(epochs.mean()), 1),
        "best_epoch": round(float(per_split["best_epoch"].first().mean()), 1),
        "seconds_per_epoch": round(seconds / float(epochs.sum()), 3),
        "splits_at_cap": int((epochs >= options.train.max_epochs).sum()),
        "models": result.models,
    }


def markdown(result: dict) -> str:
    columns = [name for name in RECIPES if name in result["recipes"]]
    lines = [
        "# Recipe benchmark",
        "",
        f"Corpus: `{result['features']}` ({result['n_tracks']} tracks, "
        f"{result['inputs']['audio']} stems); nested CV {result['folds']['outer']} × "
        f"{result['folds']['inner']}, seed {result['folds']['seed']}; epochs capped at "
        f"{result['max_epochs']}; {result['threads']} thread(s), load average "
        f"{result['load_average']} at the start.",
        "",
        "Pooled out-of-fold R² (valence / arousal). Ridge: per-band log-mel mean and",
        "sd, trained and selected on the same inner splits as the networks. Cells:",
        "mean epochs run per split, mean best epoch, seconds per epoch (these follow",
        "the machine's load during each run: compare epochs across columns, not",
        "seconds, unless the columns ran in one process).",
        "",
        "| inputs | ridge | " + " | ".join(columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]

    def cell(entry: dict | None) -> str:
        if entry is None:
            return ""
        text = f"{entry['r2']['valence']:.2f} / {entry['r2']['arousal']:.2f}"
        if "epochs_run" in entry:
            text += (
                f" ({entry['epochs_run']:.0f} ep, best {entry['best_epoch']:.0f}, "
                f"{entry['seconds_per_epoch']:.2f} s/ep"
            )
            if entry["splits_at_cap"]:
                text += f", {entry['splits_at_cap']} at cap"
            text += ")"
        return text

    network = result.get("network", "C1D")
    for row, label in result["rows"]:
        lines.append(
            f"| {label} | {cell(result['ridge'].get(row))} | "
            + " | ".join(cell(result[name].get(row)) for name in columns)
            + " |"
        )
    lines += [
        "",
        f"Recipes (`training` and `networks.{network}` of each environment; the "
        "base-* recipes are base with the network arguments shown):",
        "",
    ]
    for env in columns:
        settings = result["recipes"][env]
        keys = (
            "learning_rate",
            "batch_size",
            "loss_reduction",
            "weight_decay",
            "standardise",
            "patience",
            "max_epochs",
        )
        training = ", ".join(f"{k} {settings['training'].get(k)}" for k in keys)
        lines.append(
            f"- {env}: {training}; {network} {settings['networks'].get(network, {})}"
        )
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data = ROOT / "data"
    parser.add_argument(
        "--features", type=Path, default=data / "04_feature" / "stems_log_mel.pt"
    )
    parser.add_argument(
        "--track-table", type=Path, default=data / "03_primary" / "track_table.csv"
    )
    parser.add_argument("--outer", type=int, default=3)
    parser.add_argument("--inner", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--stems", nargs="+", default=list(SOURCES))
    parser.add_argument("--max-epochs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1, help="seeds per split")
    parser.add_argument(
        "--network",
        choices=["C1D", "C2D"],
        default="C1D",
        help="the single-source network, and EmoMucs' source network",
    )
    parser.add_argument(
        "--strategies", nargs="*", default=["freeze", "full"], help="late fusion"
    )
    parser.add_argument(
        "--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES)
    )
    parser.add_argument(
        "--output", default="recipe", help="results file name, without extension"
    )
    parser.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        help="only combine earlier JSON results (one recipe each, same corpus)",
    )
    args = parser.parse_args(argv)
    if args.merge:
        return write(merge(args.merge), args.output)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)

    features_path = newest(args.features)
    features = torch.load(features_path, weights_only=True)
    table = pd.read_csv(newest(args.track_table))
    ids = np.intersect1d(features["music_ids"].numpy(), table["musicId"].to_numpy())
    folds = assign_folds(ids, args.outer, args.inner, args.seed)
    result = {
        "features": str(features_path.relative_to(ROOT))
        if features_path.is_relative_to(ROOT)
        else str(features_path),
        "inputs": describe_inputs(features),
        "n_tracks": len(ids),
        "folds": {"outer": args.outer, "inner": args.inner, "seed": args.seed},
        "max_epochs": args.max_epochs,
        "network": args.network,
        "threads": args.threads,
        "load_average": round(os.getloadavg()[0], 2),
        "machine": platform.processor() or platform.machine(),
        "recipes": {
            env: recipe(env, args.max_epochs, args.repeats) for env in args.recipes
        },
        "rows": [],
        "ridge": {},
    }
    for stem in args.stems:
        result["rows"].append((stem, f"{stem} ({args.network})"))
        result["ridge"][stem] = {
            "r2": r2(ridge_predictions(features, table, folds, [stem]))
        }
        log.info("ridge %s: %s", stem, result["ridge"][stem]["r2"])
    result["ridge"]["all"] = {
        "r2": r2(ridge_predictions(features, table, folds, args.stems))
    }
    log.info("ridge all: %s", result["ridge"]["all"]["r2"])
    for strategy in args.strategies:
        result["rows"].append((f"late_{strategy}", f"all stems (late {strategy})"))
    result["rows"].insert(len(args.stems), ("all", "all stems"))

    for env in args.recipes:
        settings = result["recipes"][env]
        networks = settings["networks"]
        scores, pretrained = {}, {}
        for stem in args.stems:
            spec = ExperimentSpec.from_params(
                {"model": args.network, "sources": [stem]}, networks
            )
            entry = run_network(spec, features, table, folds, settings)
            pretrained[stem] = entry.pop("models")
            scores[stem] = entry
            log.info("%s %s: %s", env, stem, entry)
        for strategy in args.strategies:
            spec = ExperimentSpec.from_params(
                {
                    "model": "EmoMucs",
                    "source_model": args.network,
                    "sources": list(args.stems),
                    "fusion": "late",
                    "strategy": strategy,
                },
                networks,
            )
            entry = run_network(spec, features, table, folds, settings, pretrained)
            entry.pop("models")
            scores[f"late_{strategy}"] = entry
            log.info("%s late %s: %s", env, strategy, entry)
        result[env] = scores

    return write(result, args.output)


def merge(paths: list[Path]) -> dict:
    """One result from several runs of one recipe each (run in parallel)."""
    parts = [json.loads(path.read_text()) for path in paths]
    merged = {**parts[0], "recipes": {}, "load_average": []}
    for part in parts:
        if (part["features"], part["folds"], part.get("network", "C1D")) != (
            merged["features"],
            merged["folds"],
            merged.get("network", "C1D"),
        ):
            raise SystemExit(
                f"{paths}: results of different corpora, folds or networks"
            )
        merged["recipes"].update(part["recipes"])
        merged["rows"] += [row for row in part["rows"] if row not in merged["rows"]]
        merged["load_average"].append(part["load_average"])
        merged.update({env: part[env] for env in part["recipes"]})
    return merged


def write(result: dict, name: str) -> dict:
    folder = results_dir()
    (folder / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (folder / f"{name}.md").write_text(markdown(result))
    print(markdown(result))  # noqa: T201
    return result


def summarize(result: dict) -> list[dict]:
    """No speed figure: the recipe benchmark compares R² (see recipe.md)."""
    return [
        figure(
            "recipes compared (R² per stem and fusion, see recipe.md)",
            len(result.get("rows", [])),
            "rows",
            note=f"recipes {', '.join(result.get('recipes', {}))}; "
            f"{result.get('n_tracks')} tracks",
        )
    ]


if __name__ == "__main__":
    main()
