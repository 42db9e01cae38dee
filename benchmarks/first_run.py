"""First-run benchmark: the README's main command on a fresh clone, then a rerun.

    python -m benchmarks --only first_run
    python -m benchmarks.first_run [--pipeline emomucs_late] [--keep]

Clones the committed HEAD into a temporary folder and, there:

1. installs (``. scripts/setup_env.sh``: a fresh ``.venv``), timed apart, since the
   goal counts the work after the install;
2. runs ``bash scripts/run_offline.sh`` (the README's first command: corpus, the shipped
   separator, then the pipeline) under ``/usr/bin/time``: wall time, CPU time and peak
   RSS of the largest process, the peak memory (PSS) of all its processes together
   (worker processes included), and each Kedro node's time from its log;
3. runs the same command again (the rerun: corpus, stems and trained splits cached).

Writes ``benchmarks/results/first_run.json`` and ``first_run.md`` with the machine's
load average before and after: on a shared machine the wall times are upper bounds,
and CPU seconds / cores is what an idle machine of this size could at best reach.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

from benchmarks.suite import ROOT, figure, results_dir

_NODE_LINE = re.compile(r"(Running|Completed) node: ?(\S*)")
_STAMP = re.compile(r"^\[(\d\d/\d\d/\d\d \d\d:\d\d:\d\d)\]")


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["PATH"] = ":".join(
        p for p in env["PATH"].split(":") if "/.venv/" not in p and "/venv/" not in p
    )
    env.update(
        KEDRO_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="1",
        HF_HUB_OFFLINE="1",
        CI="true",
        COLUMNS="200",
    )
    return env


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # the command name may hold spaces and parentheses: split after its ")"
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return children


def _command_line(pid: int) -> str:
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    line = " ".join(w.decode(errors="replace") for w in words if w)
    return line[:120]


def tree_pss(root: int) -> dict[int, int]:
    """Proportional set size in kB of ``root`` and each of its descendants: the
    memory each process holds, pages shared between them (torch's libraries in each
    worker) split between them, so the values add up to what the tree holds."""
    children, sizes, todo = _children(), {}, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:  # ended meanwhile
            continue
        found = re.search(r"^Pss:\s+(\d+) kB", rollup, flags=re.M)
        sizes[pid] = int(found.group(1)) if found else 0
    return sizes


def tree_pss_kb(root: int) -> int:
    """:func:`tree_pss` of the whole tree, in kB."""
    return sum(tree_pss(root).values())


class _TreeMemory(threading.Thread):
    """Samples :func:`tree_pss` of a process every ``every`` seconds; keeps the
    peak, when it was and the processes that held it."""

    def __init__(self, pid: int, every: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pid, self.every, self.peak_kb = pid, every, 0
        self.peak_at: float | None = None
        self.peak_processes: list[dict[str, object]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every):
            sizes = tree_pss(self.pid)
            total = sum(sizes.values())
            if total > self.peak_kb:
                self.peak_kb, self.peak_at = total, time.time()
                self.peak_processes = [
                    {"command": _command_line(pid), "pss_mb": round(kb / 1024, 1)}
                    for pid, kb in sorted(sizes.items(), key=lambda item: -item[1])
                    if kb >= 50 * 1024
                ]


def _timed(command: str, cwd: Path, log: Path) -> dict[str, float]:
    """Run ``command`` in bash under ``/usr/bin/time``; its figures and the log.

    ``peak_rss_mb`` is the largest single process (``/usr/bin/time``);
    ``peak_tree_mb`` the peak of all the command's processes together (worker
    processes included), sampled twice a second.
    """
    started = time.perf_counter()
    with log.open("w") as stream:
        process = subprocess.Popen(
            ["/usr/bin/time", "-f", "TIME %e %U %S %M", "bash", "-c", command],
            cwd=cwd,
            stdout=stream,
            stderr=subprocess.STDOUT,
            env=_environment(),
        )
        memory = _TreeMemory(process.pid)
        memory.start()
        code = process.wait()
        memory.done.set()
        memory.join()
    wall = time.perf_counter() - started
    text = log.read_text(errors="replace")
    if code != 0:
        raise SystemExit(f"{command!r} failed ({code}); log: {log}\n{text[-3000:]}")
    figures = re.findall(r"^TIME (\S+) (\S+) (\S+) (\S+)$", text, flags=re.M)[-1]
    elapsed, user, system, peak_kb = (float(x) for x in figures)
    return {
        "wall_s": round(wall, 1),
        "cpu_s": round(user + system, 1),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "peak_tree_mb": round(memory.peak_kb / 1024, 1),
        "peak_processes": memory.peak_processes,
        "peak_node": node_at(text, memory.peak_at),
        "time_elapsed_s": elapsed,
    }


def node_times(log: str) -> dict[str, float]:
    """Seconds per Kedro node from a run's log (rich's timestamps, 1 s resolution).

    Rich prints a timestamp only when it changes, so each line carries the last
    one; the sequential runner runs one node at a time, so a ``Completed`` line
    closes the last ``Running`` one. A node is named by its name and the namespace
    of its first output (``emomucs_late.c1d_full: train_nested_cv``).
    """
    now, running, seconds = None, None, {}
    for line in log.splitlines():
        stamp = _STAMP.match(line)
        if stamp:
            now = datetime.strptime(stamp.group(1), "%m/%d/%y %H:%M:%S")
        found = _NODE_LINE.search(line)
        if not found or now is None:
            continue
        kind, name = found.groups()
        label = name.rstrip(":") or "(unnamed)"
        namespace = re.search(r"-> \[([A-Za-z0-9_]+\.[A-Za-z0-9_]+)\.", line)
        if namespace:
            label = f"{namespace.group(1)}: {label}"
        if kind == "Running":
            running = (label, now)
        elif running is not None:
            seconds[running[0]] = (
                seconds.get(running[0], 0.0) + (now - running[1]).total_seconds()
            )
            running = None
    return dict(sorted(seconds.items(), key=lambda item: -item[1]))


def node_at(log: str, when: float | None) -> str | None:
    """The Kedro node that was running at ``when`` (a Unix time) by the log's
    timestamps (1 s resolution, local time, as rich prints them), or None."""
    if when is None:
        return None
    moment = datetime.fromtimestamp(when).replace(microsecond=0)
    now, running = None, None
    for line in log.splitlines():
        stamp = _STAMP.match(line)
        if stamp:
            now = datetime.strptime(stamp.group(1), "%m/%d/%y %H:%M:%S")
            if now > moment:
                break
        found = _NODE_LINE.search(line)
        if found and now is not None:
            kind, name = found.groups()
            namespace = re.search(r"-> \[([A-Za-z0-9_]+\.[A-Za-z0-9_]+)\.", line)
            label = name.rstrip(":") or "(unnamed)"
            if namespace:
                label = f"{namespace.group(1)}: {label}"
            running = label if kind == "Running" else None
    return running


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", default="emomucs_late")
    parser.add_argument("--keep", action="store_true", help="keep the clone")
    args = parser.parse_args(argv)
    commit = subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=ROOT, text=True)
    work = Path(tempfile.mkdtemp(prefix="first-run-"))
    clone = work / "project"
    subprocess.check_call(["git", "clone", "-q", str(ROOT), str(clone)])
    subprocess.check_call(["git", "checkout", "-q", commit.strip()], cwd=clone)
    shared = ROOT.parent / "shared"
    if shared.exists():
        (work / "shared").symlink_to(shared)
    load_before = os.getloadavg()
    install = _timed(". scripts/setup_env.sh", clone, work / "install.log")
    run_command = f"PIPELINE={args.pipeline} bash scripts/run_offline.sh"
    first = _timed(run_command, clone, work / "first.log")
    first["nodes_s"] = node_times((work / "first.log").read_text(errors="replace"))
    rerun = _timed(run_command, clone, work / "rerun.log")
    rerun["nodes_s"] = node_times((work / "rerun.log").read_text(errors="replace"))
    load_after = os.getloadavg()
    result = {
        "command": run_command,
        "commit": commit.strip(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in load_after],
        },
        "install": install,
        "first": first,
        "rerun": rerun,
        "goal": {"first_s": 600, "rerun_s": 120},
    }
    folder = results_dir()
    (folder / "first_run.json").write_text(json.dumps(result, indent=2) + "\n")
    (folder / "first_run.md").write_text(markdown(result))
    sys.stdout.write(markdown(result))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        sys.stdout.write(f"clone kept in {clone}\n")
    return result


def summarize(result: dict) -> list[dict]:
    """The first run and the rerun against their goals, and the install apart."""
    goals = result["goal"]
    first, rerun = result["first"], result["rerun"]
    return [
        figure(
            "first run after install (README's command): wall time",
            first["wall_s"],
            "s",
            goal=f"≤ {goals['first_s']} s",
            met=first["wall_s"] <= goals["first_s"],
            note=f"CPU {first['cpu_s']} s; install {result['install']['wall_s']} s "
            "apart",
        ),
        figure(
            "first run: peak memory of all its processes (PSS)",
            first["peak_tree_mb"],
            "MB",
            goal="≤ 2048 MB",
            met=first["peak_tree_mb"] <= 2048,
            note=f"largest single process: {first['peak_rss_mb']} MB RSS",
        ),
        figure(
            "rerun (everything cached): wall time",
            rerun["wall_s"],
            "s",
            reference=first["wall_s"],
            ratio=round(first["wall_s"] / rerun["wall_s"], 2),
            goal=f"≤ {goals['rerun_s']} s",
            met=rerun["wall_s"] <= goals["rerun_s"],
        ),
    ]


def markdown(result: dict) -> str:
    machine = result["machine"]
    cores = machine["cpus"]
    lines = [
        "# First run of the README's main command",
        "",
        f"`python -m benchmarks.first_run` on a fresh clone of {result['commit'][:7]}: "
        f"`{result['command']}`, {cores} CPUs, load average {machine['load_before']} "
        f"before and {machine['load_after']} after (a shared machine makes wall times "
        f"upper bounds; CPU s / {cores} is the best an idle {cores}-core machine could "
        "do).",
        "",
        "| step | wall s | CPU s | CPU s / cores | peak MB, all processes (PSS) "
        "| peak RSS MB, largest process | goal |",
        "|---|---|---|---|---|---|---|",
    ]
    goals = {"first": "≤ 600 s after install", "rerun": "≤ 120 s"}
    for step in ("install", "first", "rerun"):
        figures = result[step]
        lines.append(
            f"| {step} | {figures['wall_s']} | {figures['cpu_s']} | "
            f"{figures['cpu_s'] / cores:.0f} | {figures.get('peak_tree_mb', '–')} | "
            f"{figures['peak_rss_mb']} | "
            f"{goals.get(step, '–')} |"
        )
    first = result["first"]
    if first.get("peak_processes"):
        lines += [
            "",
            f"At the first run's peak ({first['peak_tree_mb']} MB, during "
            f"`{first.get('peak_node') or 'no node'}`), the processes holding 50 MB "
            "or more:",
            "",
            "| process | PSS MB |",
            "|---|---|",
        ]
        lines += [
            f"| `{process['command']}` | {process['pss_mb']} |"
            for process in first["peak_processes"]
        ]
    lines += ["", "Slowest nodes of the first run (seconds, from Kedro's log):", ""]
    lines += ["| node | s |", "|---|---|"]
    for name, seconds in list(result["first"]["nodes_s"].items())[:15]:
        lines.append(f"| {name} | {seconds:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
