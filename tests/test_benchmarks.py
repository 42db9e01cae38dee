"""The benchmark entry point (``python -m benchmarks``): selection, results, summary.

No timing is checked here (benchmarks compare timings as ratios in their own runs);
these tests check that the suite runs a benchmark and writes well-formed results.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from benchmarks import features, suite


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setenv(suite.RESULTS_VARIABLE, str(tmp_path))
    return tmp_path


def test_selection_defaults_only_and_unknown_names():
    defaults = [b.name for b in suite.select(None, None)]
    assert {"separation", "features", "training", "footprint"} <= set(defaults)
    assert "recipe" not in defaults  # long: only on request
    assert [b.name for b in suite.select(["recipe"], None)] == ["recipe"]
    assert "features" not in [b.name for b in suite.select(None, ["features"])]
    with pytest.raises(SystemExit, match="unknown benchmark"):
        suite.select(["nope"], None)
    args = suite.parse_args(["--quick", "--only", "features", "--only", "training"])
    assert args.quick and args.only == ["features", "training"]


def test_an_absent_optional_benchmark_is_skipped_with_a_note():
    absent = suite.Benchmark(
        "later", "not_written_yet", "a later branch's", optional=True
    )
    record = suite.run_benchmark(absent, quick=True)
    assert record["status"] == "absent"
    # one with no smoke size is left out of --quick runs, with a note
    long = suite.Benchmark("long", "not_written_yet", "", quick=False)
    assert suite.run_benchmark(long, quick=True)["status"] == "skipped"
    # a present module is imported and run: here one whose main fails, recorded
    broken = suite.Benchmark("features", "features", "", optional=True)
    record = suite.run_benchmark(broken, quick=True, extra=["--clips", "zero"])
    assert record["status"] == "failed" and "SystemExit" in record["note"]


def test_features_benchmark_agrees_with_librosa_and_reports_ratios(results):
    result = features.main(["--clips", "2", "--seconds", "1", "--repeats", "2"])
    stored = json.loads((results / "features.json").read_text())
    assert stored["clips"] == 2 and stored["signals"] == 10
    assert stored["agree"] and stored["relative_difference"] <= features.TOLERANCE
    assert np.isclose(stored["speedup"], stored["reference_s"] / stored["project_s"])
    rows = features.summarize(result)
    assert {row["figure"] for row in rows} and all(
        set(row) == set(suite.figure("x", 1.0)) for row in rows
    )
    assert rows[-1]["met"] is True  # the agreement


def test_entry_point_writes_a_summary_of_each_run(results, monkeypatch):
    monkeypatch.chdir(results)  # main() works from the repo root; come back after
    later = suite.Benchmark("later", "not_written_yet", "", optional=True)
    monkeypatch.setattr(suite, "REGISTRY", (*suite.REGISTRY, later))
    records = suite.main(
        ["--only", "features", "--args=--clips 1 --seconds 1 --repeats 1"]
    )
    assert [r["status"] for r in records] == ["ok"]
    summary = (results / "SUMMARY.md").read_text()
    assert "| features | log-mel, mix + 4 stems" in summary
    stored = json.loads((results / "suite.json").read_text())
    assert stored["records"][0]["load_before"] and stored["peak_rss_mb"] > 0
    # a second run of another benchmark keeps the first one's rows
    records = suite.main(["--only", "later"])
    assert [r["status"] for r in records] == ["absent"]
    summary = (results / "SUMMARY.md").read_text()
    assert "| features | log-mel" in summary and "| later | *absent*" in summary


def test_tree_memory_counts_the_children():
    from benchmarks.first_run import tree_pss_kb

    alone = tree_pss_kb(os.getpid())
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; b = bytearray(300_000_000); print(1, flush=True); "
            "time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        child.stdout.readline()  # its memory is touched
        assert tree_pss_kb(os.getpid()) - alone > 250_000
    finally:
        child.kill()
        child.wait()


def test_tree_memory_names_the_process_holding_the_peak():
    from benchmarks.first_run import _TreeMemory

    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; b = bytearray(200_000_000); print(1, flush=True); "
            "time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
    )
    memory = _TreeMemory(os.getpid(), every=0.05)
    try:
        child.stdout.readline()
        memory.start()
        time.sleep(0.5)
    finally:
        memory.done.set()
        memory.join()
        child.kill()
        child.wait()
    (holder,) = [
        process
        for process in memory.peak_processes
        if "bytearray(200_000_000)" in process["command"]
    ]
    assert holder["pss_mb"] > 180 and memory.peak_at is not None


def test_node_at_reads_the_running_node_from_kedros_log():
    from datetime import datetime

    from benchmarks.first_run import node_at

    log = "\n".join(
        [
            "[12/03/26 06:30:00] INFO     Running node: separate_sources: "
            "separate([clips]) -> [stems]",
            "[12/03/26 06:30:05] INFO     Completed node: separate_sources",
            "                    INFO     Running node: train_nested_cv: "
            "train([x]) -> [emomucs_late.c2d_full.splits]",
            "[12/03/26 06:31:00] INFO     Completed node: train_nested_cv",
        ]
    )

    def at(text: str) -> float:
        return datetime.strptime(text, "%H:%M:%S").replace(2026, 12, 3).timestamp()

    assert node_at(log, at("06:30:30")) == "emomucs_late.c2d_full: train_nested_cv"
    assert node_at(log, at("06:30:02")) == "separate_sources"
    assert node_at(log, at("06:31:30")) is None
    assert node_at(log, None) is None


def test_split_memory_reads_each_row_against_the_baseline_of_its_own_round():
    from benchmarks import split_memory

    def run(seconds, peak):
        return {"train_s": seconds, "peak_rss_mb": peak, "inputs_rss_mb": 100}

    other = split_memory.RUN_DEFAULTS
    # a busy host in the second round slows both rows alike
    rounds = [
        {split_memory.BASELINE: run(4.0, 600), other: run(3.0, 500)},
        {split_memory.BASELINE: run(8.0, 610), other: run(6.0, 510)},
        {split_memory.BASELINE: run(3.0, 590), other: run(3.6, 490)},
    ]
    result = split_memory.summarise_rounds(rounds)
    tuned = result[other]
    assert tuned["train_s"] == 3.6 and tuned["train_s_range"] == [3.0, 6.0]
    # per round 0.75, 0.75, 1.2: not 3.6 / 4.0 from the medians
    assert tuned["train_s_ratio_to_baseline"] == 0.75
    assert result[split_memory.BASELINE]["train_s_ratio_to_baseline"] == 1.0
    time_row, memory_row = split_memory.summarize(result)
    assert time_row["ratio"] == round(1 / 0.75, 2)
    assert memory_row["value"] == 400 and memory_row["reference"] == 500


def test_recipe_variants_change_only_their_networks_arguments():
    from benchmarks import recipe

    base = recipe.recipe("base", 50, 1)
    wider = recipe.recipe("base-c2d16", 50, 1)
    assert base["networks"]["C2D"]["n_filters"] == 8
    assert wider["networks"]["C2D"]["n_filters"] == 16
    assert wider["networks"]["C1D"] == base["networks"]["C1D"]
    assert wider["training"] == base["training"]
    assert recipe.recipe("base-flatten", 50, 1)["networks"]["C1D"]["pooling"] == (
        "flatten"
    )
    assert recipe.recipe("paper", 50, 1)["training"]["max_epochs"] == 50  # capped
    slower = recipe.recipe("base-lr0.001", 50, 1)
    assert slower["training"]["learning_rate"] == 0.001
    assert {**slower["training"], "learning_rate": None} == {
        **base["training"],
        "learning_rate": None,
    }
