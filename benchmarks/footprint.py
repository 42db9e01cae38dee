"""Footprint benchmark: disk per artifact and peak memory of the default run's stages.

``python -m benchmarks --only footprint`` (or ``python -m benchmarks.footprint
[--stages features|default] [--separator local|oracle] [--reruns 1]``).

**--stages default** (what ``python -m benchmarks`` runs): the default run as
``scripts/run_offline.sh`` makes it after install, in a scratch project: ``kedro
run --pipeline=synthetic_corpus``, ``--pipeline=separator_training`` and
``--pipeline=emomucs_late``, each in a measured process of its own (wall time, peak
RSS), then the disk ``data/`` holds. ``--params`` goes to every ``kedro run``
(``--quick`` makes the corpus, the separator training and the nested CV tiny).

**--stages features** (after ``kedro run --pipeline=synthetic_corpus``):

In a scratch copy of the project (``conf/`` copied, the repo's synthetic corpus linked,
so the repo's own ``data/`` is left alone) it runs the default run's stages up to the
features, ``kedro run --pipeline=features --to-outputs=mix_log_mel,stems_log_mel,
separation_sdr`` (ingestion, clipping, separation, SDR, log-mel of the mix and the
stems), in a process of its own whose peak RSS is read with ``getrusage``. The
separator is the compact one of ``data/06_models/separator`` when it is there; else an
untrained HTDemucs of the same (configured) size, which costs the same time, memory and
disk; ``--separator oracle`` uses the true stems (no stems cache). ``--reruns`` runs
the same command again: identical versions are hard links, so data/ should not grow.

In the same run it measures, on the corpus' own audio, what storing it costs the
features: the stored artifacts re-saved as float32 (the size ratio), and the largest
log-mel difference between the true stems and the same stems through 16-bit FLAC (the
stored format) or float16 (the alternative). The raw corpus is sized as it is and as
16-bit FLAC would store it.

Writes ``footprint.json`` and ``footprint.md`` in the results folder.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import yaml

from benchmarks.suite import ROOT, figure, results_dir

CORPUS = Path("data") / "01_raw" / "synthetic"
SEPARATOR = Path("data") / "06_models" / "separator"
OUTPUTS = "mix_log_mel,stems_log_mel,separation_sdr"
DEFAULT_RUN = ("synthetic_corpus", "separator_training", "emomucs_late")
"""The pipelines ``scripts/run_offline.sh`` runs, in order."""
QUICK_ARGS = (
    "--params",
    "synthetic_corpus.n_tracks=16,synthetic_corpus.multitrack.n_tracks=4,"
    "separator_training.training.steps=2,separator_training.training.warmup_steps=1,"
    "training.max_epochs=2,training.repeats=1",
    "--tracks",
    "4",
    "--reruns",
    "0",
)

# Counts the child's peak RSS (Linux reports kB) and passes its exit status on.
_MEASURED = (
    "import resource, subprocess, sys; "
    "code = subprocess.call(sys.argv[1:]); "
    "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
    "sys.exit(code)"
)


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        KEDRO_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="1",
        HF_HUB_OFFLINE="1",
        CI="true",
        MPLBACKEND="Agg",
        PYTHONPATH=os.pathsep.join(
            [str(ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])]
        ),
    )
    return env


def scratch_project(folder: Path, separator: str, link_corpus: bool = True) -> str:
    """A copy of the conf with the repo's corpus linked in; returns the separator used.

    Without ``link_corpus`` the project starts empty, as a fresh clone does, and
    MLflow tracks its runs (into the scratch folder) as the default run's do.
    """
    shutil.copy(ROOT / "pyproject.toml", folder / "pyproject.toml")
    shutil.copytree(ROOT / "conf" / "base", folder / "conf" / "base")
    (folder / "conf" / "local").mkdir()
    (folder / "src").mkdir()
    if not link_corpus:
        return "local (trained in the run)"
    (folder / CORPUS).parent.mkdir(parents=True)
    (folder / CORPUS).symlink_to(ROOT / CORPUS)
    # no MLflow run: this measures the data stages
    mlflow = yaml.safe_load((ROOT / "conf" / "base" / "mlflow.yml").read_text())
    mlflow["tracking"]["disable_tracking"]["pipelines"] = ["features"]
    (folder / "conf" / "local" / "mlflow.yml").write_text(yaml.safe_dump(mlflow))
    if separator == "oracle":
        return "oracle"
    repo = folder / SEPARATOR
    if any((ROOT / SEPARATOR).glob("*.th")):
        shutil.copytree(ROOT / SEPARATOR, repo)
        return "local (trained compact)"
    write_untrained_compact(folder, repo)
    return "local (untrained compact, same size)"


def write_untrained_compact(project: Path, repo: Path) -> None:
    import torch
    from demucs.states import save_with_checksum
    from kedro.config import OmegaConfigLoader

    from emomucs.separation import TrainingOptions, package_model
    from emomucs.separation.training import build_compact_htdemucs

    params = OmegaConfigLoader(str(project / "conf"), base_env="base")["parameters"]
    options = TrainingOptions.from_options(params["separator_training"]["training"])
    torch.manual_seed(0)
    model = build_compact_htdemucs(options)
    repo.mkdir(parents=True)
    name = params["separation"]["separator"]["name"]
    save_with_checksum(package_model(model, {}), repo / f"{name}.th")


def run_stages(
    project: Path, separator: str, pipeline: str = "features", params: str = ""
) -> dict:
    """One ``kedro run`` in a measured process: by default the default run's stages
    up to the features."""
    command = [
        sys.executable,
        "-c",
        _MEASURED,
        sys.executable,
        "-m",
        "kedro",
        "run",
        f"--pipeline={pipeline}",
    ]
    if pipeline == "features":
        command.append(f"--to-outputs={OUTPUTS}")
    if separator == "oracle":
        params = ",".join(filter(None, [params, "separation.separator.kind=oracle"]))
    if params:
        command.append(f"--params={params}")
    started = time.perf_counter()
    done = subprocess.run(
        command,
        cwd=project,
        env=environment(),
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"kedro run failed:\n{(done.stdout + done.stderr)[-4000:]}")
    peak = next(
        int(line.split()[1])
        for line in done.stdout.splitlines()
        if line.startswith("PEAK_RSS_KB")
    )
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(peak / 1024, 1)}


def disk_usage(data: Path) -> dict[str, int]:
    """Bytes per artifact under ``data`` (hard links counted once), corpus excluded."""
    seen: set[tuple[int, int]] = set()
    sizes: dict[str, int] = {}
    for layer in sorted(data.iterdir()):
        if layer.is_symlink() or not layer.is_dir() or layer.name == "01_raw":
            continue
        for artifact in sorted(layer.iterdir()):
            total = 0
            files = [artifact] if artifact.is_file() else artifact.rglob("*")
            for file in files:
                if not file.is_file():
                    continue
                stat = file.stat()
                if (stat.st_dev, stat.st_ino) not in seen:
                    seen.add((stat.st_dev, stat.st_ino))
                    total += stat.st_size
            sizes[f"{layer.name}/{artifact.name}"] = total
    return sizes


def latest(project: Path, relative: str) -> Path:
    folder = project / relative
    return sorted(folder.glob(f"*/{folder.name}"))[-1]


def float32_sizes(project: Path) -> dict[str, dict[str, int]]:
    """Each stored audio artifact against the same audio saved as float32."""
    from emomucs.datasets import AudioSetDataset

    sizes = {}
    for relative in (
        "data/02_intermediate/clips.npz",
        "data/03_primary/mix.npz",
        "data/03_primary/stems.npz",
    ):
        path = latest(project, relative)
        with tempfile.TemporaryDirectory() as scratch:
            copy = Path(scratch) / "float32.npz"
            dataset = AudioSetDataset(str(copy), codec="float32")
            dataset.save(AudioSetDataset(str(path)).load())
            sizes[Path(relative).name] = {
                "stored": path.stat().st_size,
                "float32": copy.stat().st_size,
            }
    return sizes


def log_mel_effect(project: Path, tracks: int) -> dict[str, dict[str, float]]:
    """Largest log-mel change (dB) when the true stems and the mix are stored."""
    from kedro.config import OmegaConfigLoader

    from emomucs import audio_codec
    from emomucs.datasets import AudioFolderDataset, AudioSetDataset
    from emomucs.pipelines.features.nodes import log_mel
    from emomucs.pipelines.separation.nodes import cut_oracle_stems

    params = OmegaConfigLoader(str(project / "conf"), base_env="base")["parameters"]
    settings = dict(params["features"]["log_mel"])
    rate = int(params["features"]["sample_rate"])
    clips = AudioSetDataset(
        str(latest(project, "data/02_intermediate/clips.npz"))
    ).load()
    table = pd.read_csv(latest(project, "data/02_intermediate/clip_table.csv"))
    oracle = AudioFolderDataset(str(project / CORPUS / "PMEmo2019" / "stems")).load()
    stems = cut_oracle_stems(clips, table, oracle, params["separation"])
    differences: dict[str, list[np.ndarray]] = {"flac16_peak": [], "float16": []}
    for music_id in stems.music_ids[:tracks]:
        true = stems.audio[music_id]
        reference = log_mel(true[:, 0], rate, **settings)
        stored = {
            "flac16_peak": audio_codec.decode(
                *audio_codec.encode(true, rate), true.shape
            ),
            "float16": true.astype(np.float16).astype(np.float32),
        }
        for name, audio in stored.items():
            change = np.abs(log_mel(audio[:, 0], rate, **settings) - reference)
            differences[name].append(change.ravel())
    return {
        name: {
            "max_db": round(float(np.concatenate(values).max()), 3),
            "p99_9_db": round(float(np.quantile(np.concatenate(values), 0.999)), 4),
            "mean_db": round(float(np.concatenate(values).mean()), 5),
            "tracks": len(values),
        }
        for name, values in differences.items()
    }


def corpus_sizes(project: Path = ROOT) -> dict[str, int]:
    """The raw corpus' audio as written (16-bit WAV) and as 16-bit FLAC would store it."""
    wav = flac = other = 0
    for file in sorted((project / CORPUS).rglob("*")):
        if not file.is_file():
            continue
        if file.suffix != ".wav":
            other += file.stat().st_size
            continue
        wav += file.stat().st_size
        audio, rate = sf.read(file, dtype="int16", always_2d=True)
        buffer = io.BytesIO()
        sf.write(buffer, audio, rate, format="FLAC", subtype="PCM_16")
        flac += len(buffer.getvalue())
    return {"wav_bytes": wav, "as_flac_bytes": flac, "other_bytes": other}


def _mb(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def markdown(result: dict) -> str:
    runs = result["runs"]
    stages = result.get("stages") or []
    command = (
        f"python -m benchmarks.footprint --stages {result.get('stages_option')} "
        f"--separator {result['separator_option']}"
        + (f" --params {result['params']}" if result.get("params") else "")
    )
    what = (
        "`kedro run` of " + ", ".join(f"`{st['pipeline']}`" for st in stages)
        if stages
        else f"`kedro run --pipeline=features --to-outputs={OUTPUTS}`"
    )
    lines = [
        "# Footprint of the default run" + ("" if stages else "'s data stages"),
        "",
        f"`{command}` on {result['tracks']} tracks of the synthetic corpus; "
        f"separator: {result['separator']}; {result['machine']['cpus']} CPUs, load "
        f"{result['machine']['load_before']} before, "
        f"{result['machine'].get('load_after')} after. Stages: {what}, each a "
        "process of its own.",
        "",
    ]
    if stages:
        lines += [
            "| stage | wall s | peak RSS |",
            "|---|---|---|",
            *[
                f"| `{st['pipeline']}` | {st['seconds']} | {st['peak_rss_mb']:,.0f} MB |"
                for st in stages
            ],
            f"| **all** | **{sum(st['seconds'] for st in stages):.1f}** | "
            f"**{max(st['peak_rss_mb'] for st in stages):,.0f} MB** |",
            "",
            f"Then `{stages[-1]['pipeline']}` again (the reruns below):",
            "",
        ]
    lines += [
        "| run | wall s | peak RSS | data/ (corpus excluded) |",
        "|---|---|---|---|",
    ]
    for index, run in enumerate(runs):
        lines.append(
            f"| {'first' if index == 0 else f'rerun {index}'} | {run['seconds']} | "
            f"{run['peak_rss_mb']:,.0f} MB | {_mb(sum(run['disk'].values()))} |"
        )
    before = result.get("before")
    if before:
        lines.append(
            f"| before ({before['label']}) | {before['run']['seconds']} | "
            f"{before['run']['peak_rss_mb']:,.0f} MB | "
            f"{_mb(sum(before['run']['disk'].values()))} |"
        )
    lines += ["", "## data/ per artifact after the last run", ""]
    old_disk = before["run"]["disk"] if before else {}
    header = "| artifact | bytes |" + (" before |" if before else "")
    lines += [header, "|---|---|" + ("---|" if before else "")]
    for name, size in runs[-1]["disk"].items():
        if size or old_disk.get(name):
            row = f"| `{name}` | {_mb(size)} |"
            if before:
                row += f" {_mb(old_disk.get(name, 0))} |"
            lines.append(row)
    lines += [
        "",
        "## Stored audio vs float32 (same audio, same run)",
        "",
        "| artifact | stored | as float32 | ratio |",
        "|---|---|---|---|",
    ]
    for name, sizes in result["float32"].items():
        ratio = sizes["float32"] / sizes["stored"]
        lines.append(
            f"| `{name}` | {_mb(sizes['stored'])} | {_mb(sizes['float32'])} | "
            f"{ratio:.2f}× |"
        )
    lines += [
        "",
        "## Log-mel change from storage (true stems of the corpus, dB)",
        "",
        "| format | max | 99.9th percentile | mean |",
        "|---|---|---|---|",
    ]
    for name, effect in result["log_mel_effect"].items():
        lines.append(
            f"| {name} | {effect['max_db']} | {effect['p99_9_db']} | "
            f"{effect['mean_db']} |"
        )
    corpus = result["corpus"]
    lines += [
        "",
        f"Raw corpus (`{CORPUS}`): {_mb(corpus['wav_bytes'])} of 16-bit WAV; as "
        f"16-bit FLAC (lossless, same samples) {_mb(corpus['as_flac_bytes'])}.",
        "",
    ]
    if "untrained" in result["separator"]:
        lines += [
            "An untrained separator's stems are noise-like and compress worst: the "
            "trained separator's or the true stems' take less (oracle stems: about a "
            "quarter of float32).",
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", choices=["default", "features"], default="default")
    parser.add_argument("--separator", choices=["local", "oracle"], default="local")
    parser.add_argument("--reruns", type=int, default=1)
    parser.add_argument("--tracks", type=int, default=16, help="for the log-mel check")
    parser.add_argument("--params", default="", help="passed to every kedro run")
    parser.add_argument("--keep", type=Path, default=None, help="keep the scratch here")
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help="JSON {label, run} of the same stages measured on older code, shown beside",
    )
    args = parser.parse_args(argv)
    default_run = args.stages == "default"
    if not default_run and not (ROOT / CORPUS / "PMEmo2019" / "metadata.csv").is_file():
        raise SystemExit("run `kedro run --pipeline=synthetic_corpus` first")
    sys.path.insert(0, str(ROOT / "src"))
    load_before = [round(value, 2) for value in os.getloadavg()]
    scratch = Path(tempfile.mkdtemp(prefix="footprint-"))
    try:
        project = args.keep or scratch
        project.mkdir(parents=True, exist_ok=True)
        separator = scratch_project(project, args.separator, not default_run)
        stages, runs = [], []
        if default_run:
            for pipeline in DEFAULT_RUN[:-1]:
                stage = run_stages(project, args.separator, pipeline, args.params)
                stages.append({"pipeline": pipeline, **stage})
        last = DEFAULT_RUN[-1] if default_run else "features"
        for _ in range(1 + args.reruns):
            run = run_stages(project, args.separator, last, args.params)
            run["disk"] = disk_usage(project / "data")
            runs.append(run)
        if default_run:
            stages.append({"pipeline": last, **runs[0]})
        tracks = len(
            pd.read_csv(latest(project, "data/02_intermediate/clip_table.csv"))
        )
        result = {
            "stages_option": args.stages,
            "params": args.params,
            "separator_option": args.separator,
            "separator": separator,
            "tracks": tracks,
            "stages": [{k: v for k, v in st.items() if k != "disk"} for st in stages],
            "runs": runs,
            "float32": float32_sizes(project),
            "log_mel_effect": log_mel_effect(project, args.tracks),
            "corpus": corpus_sizes(project if default_run else ROOT),
            "before": json.loads(args.before.read_text()) if args.before else None,
            "machine": {
                "cpus": os.cpu_count(),
                "load_before": load_before,
                "load_after": [round(value, 2) for value in os.getloadavg()],
                "python": platform.python_version(),
                # the stages inherit it: 1 makes torch use one thread
                "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            },
        }
    except BaseException:
        print(f"failed; the scratch project stays in {project}", file=sys.stderr)  # noqa: T201
        raise
    shutil.rmtree(scratch, ignore_errors=True)
    folder = results_dir()
    (folder / "footprint.json").write_text(json.dumps(result, indent=2) + "\n")
    (folder / "footprint.md").write_text(markdown(result))
    print(markdown(result))  # noqa: T201
    return result


def summarize(result: dict) -> list[dict]:
    rows = []
    stages = result.get("stages") or []
    if stages:
        total = sum(stage["seconds"] for stage in stages)
        peak = max(stage["peak_rss_mb"] for stage in stages)
        note = ", ".join(f"{st['pipeline']} {st['seconds']:.0f} s" for st in stages)
        rows += [
            figure(
                "default run after install: wall time",
                round(total, 1),
                "s",
                goal="≤ 600 s",
                met=total <= 600 and not result.get("params"),
                note=note
                + (f"; params {result['params']}" if result["params"] else ""),
            ),
            figure(
                "default run: peak RSS (largest stage)",
                round(peak, 1),
                "MB",
                goal="≤ 2048 MB",
                met=peak <= 2048,
            ),
        ]
        if len(result["runs"]) > 1:
            rerun = result["runs"][1]["seconds"]
            rows.append(
                figure(
                    f"rerun of {stages[-1]['pipeline']} (everything cached)",
                    rerun,
                    "s",
                    reference=stages[-1]["seconds"],
                    ratio=round(stages[-1]["seconds"] / rerun, 2),
                    goal="≤ 120 s",
                    met=rerun <= 120,
                )
            )
    else:
        run = result["runs"][0]
        rows.append(
            figure(
                "data stages up to the features: wall time",
                run["seconds"],
                "s",
                note=f"peak RSS {run['peak_rss_mb']:,.0f} MB",
            )
        )
    disk = sum(result["runs"][-1]["disk"].values())
    rows.append(
        figure(
            "data/ after the run (corpus excluded)",
            round(disk / 1e6, 1),
            "MB",
            goal="≤ 1000 MB" if stages else "",
            met=disk <= 1e9 if stages else None,
        )
    )
    for name, sizes in result["float32"].items():
        rows.append(
            figure(
                f"{name}: stored vs float32",
                round(sizes["stored"] / 1e6, 1),
                "MB",
                reference=round(sizes["float32"] / 1e6, 1),
                ratio=round(sizes["float32"] / sizes["stored"], 2),
            )
        )
    return rows


if __name__ == "__main__":
    main()
