"""What the per-source contribution stage adds to an experiment run's time.

Run after ``kedro run --pipeline=synthetic_corpus`` (the default corpus)::

    python -m benchmarks.contributions [--pipeline emomucs_late] [--env base]
        [--params separation.separator.kind=oracle]

It runs the pipeline in this process, as ``kedro run`` would (MLflow included), with
the contribution nodes (``compute_source_contributions``, their figures, the overview
and the results-table section) wrapped in timers, and reports their total time as a
ratio of the rest of the run measured in the same run. Training reuses nothing: the
split cache is turned off. Writes ``benchmarks/results/contributions.json`` and
``contributions.md``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import time
from collections import defaultdict

from benchmarks.suite import ROOT, figure, results_dir

TIMED = {
    "emomucs.pipelines.experiments.nodes": ["compute_source_contributions"],
    "emomucs.pipelines.plots.nodes": [
        "plot_source_contributions",
        "plot_contributions_overview",
    ],
    "emomucs.pipelines.reporting.nodes": ["add_contributions_section"],
}
"""Module → the contribution stage's node functions in it."""


def wrap_timed(seconds: dict[str, list[float]]) -> None:
    """Replace the contribution node functions by timed ones, in their modules and
    in every module that imported them (the pipeline modules keep references,
    and the registry builds its nodes from those)."""
    import importlib
    import sys

    for module_name, names in TIMED.items():
        module = importlib.import_module(module_name)
        for name in names:
            function = getattr(module, name)

            @functools.wraps(function)
            def timed(*args, _function=function, _name=name, **kwargs):
                start = time.perf_counter()
                try:
                    return _function(*args, **kwargs)
                finally:
                    seconds[_name].append(time.perf_counter() - start)

            for loaded in list(sys.modules.values()):
                if getattr(loaded, name, None) is function:
                    setattr(loaded, name, timed)


def parse_params(items: list[str]) -> dict:
    """``a.b=1`` → ``{"a": {"b": 1}}`` (values read as YAML)."""
    import yaml

    params: dict = {}
    for item in items:
        key, _, value = item.partition("=")
        node = params
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return params


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", default="emomucs_late")
    parser.add_argument("--env", default=None)
    parser.add_argument("--params", nargs="*", default=[])
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    seconds: dict[str, list[float]] = defaultdict(list)
    wrap_timed(seconds)

    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(ROOT)
    extra = parse_params(args.params)
    extra.setdefault("training", {})["cache_dir"] = None
    load_before = os.getloadavg()
    start = time.perf_counter()
    with KedroSession.create(ROOT, env=args.env, runtime_params=extra) as session:
        session.run(pipeline_names=[args.pipeline])
    total = time.perf_counter() - start
    stage = sum(sum(v) for v in seconds.values())
    tables = sorted(
        (ROOT / "data/03_primary/track_table.csv").glob("*/track_table.csv")
    )
    tracks = sum(1 for _ in tables[-1].open()) - 1 if tables else None
    result = {
        "pipeline": args.pipeline,
        "env": args.env or "local",
        "params": args.params,
        "corpus_tracks": tracks,
        "run_seconds": total,
        "contribution_seconds": stage,
        "contribution_nodes": {
            k: {"calls": len(v), "seconds": sum(v)} for k, v in seconds.items()
        },
        "ratio_to_rest": stage / (total - stage),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }
    (results_dir() / "contributions.json").write_text(
        json.dumps(result, indent=2) + "\n"
    )
    lines = [
        "# Contribution stage: time overhead",
        "",
        f"`kedro run --pipeline={args.pipeline}` ({result['env']} environment"
        + (f", `--params {' '.join(args.params)}`" if args.params else "")
        + f", split cache off) on {tracks} tracks, in one process on "
        f"{result['cpus']} CPUs shared with other jobs (load average "
        f"{load_before[0]:.1f} before, {result['load_average_after'][0]:.1f} after).",
        "",
        "| node | calls | seconds |",
        "|---|---|---|",
        *[
            f"| {name} | {v['calls']} | {v['seconds']:.1f} |"
            for name, v in result["contribution_nodes"].items()
        ],
        f"| **contribution stage** | | **{stage:.1f}** |",
        f"| whole run | | {total:.1f} |",
        "",
        f"The contribution stage adds **{100 * result['ratio_to_rest']:.1f} %** to the "
        f"rest of the run ({stage:.1f} s on top of {total - stage:.1f} s).",
        "",
    ]
    (results_dir() / "contributions.md").write_text("\n".join(lines))
    sys.stdout.write("\n".join(lines))
    return result


def summarize(result: dict) -> list[dict]:
    return [
        figure(
            "contribution stage: share of the rest of the run",
            round(100 * result["ratio_to_rest"], 2),
            "%",
            reference=round(result["run_seconds"] - result["contribution_seconds"], 1),
            note=f"{result['contribution_seconds']:.1f} s of {result['run_seconds']:.0f}"
            f" s, `{result['pipeline']}`",
        )
    ]


if __name__ == "__main__":
    main()
