"""The benchmark suite behind ``python -m benchmarks``: a registry, a runner, a summary.

Each benchmark is a module of this package with ``main(argv) -> dict``: it parses
its own options, measures, writes ``benchmarks/results/<name>.json`` (and a
markdown page) and returns what it wrote. A module may define ``QUICK_ARGS``
(the options of a smoke-size run) and ``summarize(result) -> list[dict]`` (its
headline figures, see :func:`figure`). Modules that are not there (e.g. one that
another branch adds) are skipped with a note; modules whose ``main()`` takes no
arguments are run with ``sys.argv`` set instead.

Every figure is a ratio measured in one run against a reference on the same
machine, so the load of a shared machine (recorded with each result) cancels out
as far as it can.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import platform
import resource
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RESULTS_VARIABLE = "EMOMUCS_BENCHMARK_RESULTS"
"""Environment variable naming another results folder (``--quick`` runs write to
``results/quick``, so a smoke run never replaces the figures of a full one)."""


def results_dir() -> Path:
    """Where results go: ``$EMOMUCS_BENCHMARK_RESULTS`` or ``benchmarks/results``."""
    folder = Path(os.environ.get(RESULTS_VARIABLE) or RESULTS)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass(frozen=True)
class Benchmark:
    """One entry of the registry.

    Attributes:
        name: What ``--only`` selects; also the results file's name.
        module: The module under ``benchmarks`` (imported when run).
        what: One line for ``--list`` and the summary.
        default: Part of a plain ``python -m benchmarks`` run; the others run
            with ``--only NAME`` (they take tens of minutes or need a trained
            run's artifacts).
        optional: The module may be absent (another branch adds it): skipped
            with a note instead of failing.
        quick: Whether ``--quick`` runs it (with the module's ``QUICK_ARGS``);
            benchmarks with no smoke size are skipped there, with a note.
    """

    name: str
    module: str
    what: str
    default: bool = True
    optional: bool = False
    quick: bool = True


REGISTRY: tuple[Benchmark, ...] = (
    Benchmark(
        "separation",
        "separation",
        "separation stage vs `python -m demucs.separate`, same htdemucs-size model",
    ),
    Benchmark(
        "features",
        "features",
        "log-mel of mix + 4 stems vs a per-file librosa loop",
    ),
    Benchmark(
        "training",
        "training",
        "seconds per epoch of C1D, C2D, late fusion; projected paper grid",
    ),
    Benchmark(
        "first_run",
        "first_run",
        "the README's main command on a fresh clone: install, each stage, a rerun",
        quick=False,
    ),
    Benchmark(
        "footprint",
        "footprint",
        "the data stages up to the features: peak RSS, disk, stored audio",
        quick=False,
    ),
    Benchmark(
        "dask_scaling",
        "dask_scaling",
        "Dask runner vs the sequential runner (added by the dask branch)",
        optional=True,
    ),
    Benchmark(
        "threads",
        "threads",
        "one torch thread vs all cores: separation and an epoch of C1D and C2D",
    ),
    Benchmark(
        "split_memory",
        "split_memory",
        "one training split in a worker: memory, saved tensors, time; glibc settings",
    ),
    Benchmark(
        "recipe",
        "recipe",
        "networks vs a ridge, paper vs base recipe (needs oracle features; long)",
        default=False,
    ),
    Benchmark(
        "contributions",
        "contributions",
        "time the contribution stage adds to an experiment run (long)",
        default=False,
    ),
)


def figure(
    name: str,
    value: float | None,
    unit: str = "",
    *,
    reference: float | None = None,
    ratio: float | None = None,
    goal: str = "",
    met: bool | None = None,
    note: str = "",
) -> dict[str, Any]:
    """One summary row: a measured value, its reference measured in the same run,
    their ratio, the goal it is read against and whether it is met."""
    return {
        "figure": name,
        "value": value,
        "unit": unit,
        "reference": reference,
        "ratio": ratio,
        "goal": goal,
        "met": met,
        "note": note,
    }


def machine() -> dict[str, Any]:
    """What the timings depend on: CPUs, load average, versions, time."""
    import torch

    return {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
        "utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def write_result(name: str, result: dict[str, Any], markdown: str) -> dict[str, Any]:
    """Write ``<name>.json`` and ``<name>.md`` in :func:`results_dir`."""
    folder = results_dir()
    (folder / f"{name}.json").write_text(
        json.dumps(result, indent=2, default=str) + "\n"
    )
    (folder / f"{name}.md").write_text(markdown)
    return result


def _call_main(main: Callable[..., Any], argv: list[str], name: str) -> Any:
    """``main(argv)``, or ``main()`` with ``sys.argv`` set when it takes none."""
    if inspect.signature(main).parameters:
        return main(argv)
    saved = sys.argv
    sys.argv = [f"benchmarks.{name}", *argv]
    try:
        return main()
    finally:
        sys.argv = saved


def run_benchmark(
    benchmark: Benchmark, quick: bool, extra: list[str] | None = None
) -> dict[str, Any]:
    """Run one benchmark; return a record of how it went (never raises).

    The record has ``status`` (``ok``, ``failed``, ``absent``), the wall time, the
    load average before and after and, when it ran, its summary rows.
    """
    record: dict[str, Any] = {
        "name": benchmark.name,
        "what": benchmark.what,
        "utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "load_before": [round(value, 2) for value in os.getloadavg()],
    }
    if quick and not benchmark.quick:
        return {**record, "status": "skipped", "note": "no smoke size: not in --quick"}
    try:
        module = importlib.import_module(f"benchmarks.{benchmark.module}")
    except ModuleNotFoundError as error:
        if benchmark.optional and error.name == f"benchmarks.{benchmark.module}":
            return {**record, "status": "absent", "note": "module not present"}
        raise
    argv = list(getattr(module, "QUICK_ARGS", ())) if quick else []
    argv += list(extra or [])
    started = time.perf_counter()
    try:
        result = _call_main(module.main, argv, benchmark.name)
    except (Exception, SystemExit) as error:  # one failure must not stop the suite
        return {
            **record,
            "status": "failed",
            "seconds": round(time.perf_counter() - started, 1),
            "argv": argv,
            "note": f"{type(error).__name__}: {error}"[-2000:],
            "traceback": traceback.format_exc()[-4000:],
        }
    if not isinstance(result, dict):  # a main() that only writes its files
        path = results_dir() / f"{benchmark.name}.json"
        result = json.loads(path.read_text()) if path.is_file() else {}
    summarize = getattr(module, "summarize", None)
    record.update(
        status="ok",
        seconds=round(time.perf_counter() - started, 1),
        argv=argv,
        load_after=[round(value, 2) for value in os.getloadavg()],
    )
    try:
        record["summary"] = summarize(result) if summarize else []
    except Exception as error:  # the figures were written; only the rows are lost
        record["summary"] = []
        record["note"] = f"no summary rows: {type(error).__name__}: {error}"
    return record


def _cell(value: Any, digits: int = 3) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if abs(value) >= 10**digits:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def summary_markdown(records: list[dict[str, Any]], suite: dict[str, Any]) -> str:
    """SUMMARY.md: every benchmark's figures, their references, ratios and goals."""
    lines = [
        "# Benchmark summary",
        "",
        "Each benchmark's rows come from its last run (the table *Runs* below says "
        "when, and at what load average: the machine may be shared, so read the "
        "ratios, measured within one run, rather than the seconds). Last command: "
        f"`{' '.join(['python -m benchmarks', *suite['argv']])}` at "
        f"{suite['machine']['utc']}, {suite['machine']['cpus']} CPUs, "
        f"{suite['seconds']:.0f} s in all, peak RSS {suite['peak_rss_mb']:,.0f} MB "
        "(this process and its children).",
        "",
        "| benchmark | figure | value | reference | ratio | goal | met | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for record in records:
        if record["status"] != "ok":
            lines.append(
                f"| {record['name']} | *{record['status']}* |  |  |  |  |  | "
                f"{record.get('note', '')[:300].replace('|', '/')} |"
            )
            continue
        for row in record["summary"]:
            met = {True: "yes", False: "no", None: ""}[row.get("met")]
            value = _cell(row["value"]) + (f" {row['unit']}" if row["unit"] else "")
            lines.append(
                f"| {record['name']} | {row['figure']} | {value} | "
                f"{_cell(row['reference'])} | {_cell(row['ratio'])} | {row['goal']} | "
                f"{met} | {row['note']} |"
            )
    lines += [
        "",
        "## Runs",
        "",
        "| benchmark | run at (UTC) | status | seconds | load before → after | details |",
        "|---|---|---|---|---|---|",
    ]
    for record in records:
        details = (
            f"[{record['name']}.md]({record['name']}.md)"
            if (results_dir() / f"{record['name']}.md").is_file()
            and record["status"] == "ok"
            else ""
        )
        lines.append(
            f"| {record['name']} | {record.get('utc', '')} | {record['status']} | "
            f"{record.get('seconds', '')} | "
            f"{record['load_before']} → {record.get('load_after', '')} | {details} |"
        )
    return "\n".join(lines) + "\n"


def select(only: list[str] | None, skip: list[str] | None) -> list[Benchmark]:
    """The benchmarks to run: ``only`` (any, in registry order) or the defaults."""
    names = [benchmark.name for benchmark in REGISTRY]
    unknown = sorted((set(only or []) | set(skip or [])) - set(names))
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; known: {names}")
    chosen = [b for b in REGISTRY if (b.name in only if only else b.default)]
    return [b for b in chosen if b.name not in (skip or [])]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run the benchmarks; write benchmarks/results/*.json, *.md and "
        "SUMMARY.md.",
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only this benchmark (repeatable; also the non-default ones)",
    )
    parser.add_argument("--skip", action="append", metavar="NAME")
    parser.add_argument(
        "--quick", action="store_true", help="smoke-size runs (checks, not figures)"
    )
    parser.add_argument("--list", action="store_true", help="list and exit")
    parser.add_argument(
        "--args",
        default="",
        help="extra options passed to the (single) benchmark named by --only",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the selected benchmarks and write SUMMARY.md; return their records."""
    args = parse_args(argv)
    if args.list:
        for b in REGISTRY:
            tags = [
                t for t, on in (("default", b.default), ("optional", b.optional)) if on
            ]
            print(f"{b.name:14} {b.what} [{', '.join(tags)}]")  # noqa: T201
        return []
    chosen = select(args.only, args.skip)
    if args.args and len(chosen) != 1:
        raise SystemExit("--args needs exactly one --only NAME")
    os.chdir(ROOT)
    if args.quick and not os.environ.get(RESULTS_VARIABLE):
        os.environ[RESULTS_VARIABLE] = str(RESULTS / "quick")
    if str(ROOT / "src") not in sys.path:
        sys.path.insert(0, str(ROOT / "src"))
    suite: dict[str, Any] = {"argv": list(argv or sys.argv[1:]), "machine": machine()}
    started = time.perf_counter()
    records = []
    for benchmark in chosen:
        print(f"== {benchmark.name}: {benchmark.what}", flush=True)  # noqa: T201
        record = run_benchmark(benchmark, args.quick, args.args.split())
        print(  # noqa: T201
            f"== {benchmark.name}: {record['status']} "
            f"({record.get('seconds', 0):.0f} s) {record.get('note', '')}",
            flush=True,
        )
        records.append(record)
    suite["seconds"] = time.perf_counter() - started
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    suite["peak_rss_mb"] = max(own, children) / 1024  # Linux: kB
    suite["quick"] = args.quick
    folder = results_dir()
    # Benchmarks not rerun keep their last record, so `--only NAME` updates one row
    # group of SUMMARY.md and leaves the others as they were (each with its date).
    previous = folder / "suite.json"
    kept = json.loads(previous.read_text())["records"] if previous.is_file() else []
    by_name = {record["name"]: record for record in kept}
    by_name.update({record["name"]: record for record in records})
    order = [b.name for b in REGISTRY]
    merged = sorted(
        by_name.values(),
        key=lambda r: order.index(r["name"]) if r["name"] in order else len(order),
    )
    (folder / "suite.json").write_text(
        json.dumps({**suite, "records": merged}, indent=2, default=str) + "\n"
    )
    markdown = summary_markdown(merged, suite)
    (folder / "SUMMARY.md").write_text(markdown)
    print(markdown)  # noqa: T201
    return records
