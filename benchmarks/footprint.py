"""Footprint benchmark: disk per artifact and peak memory of the default run's stages.

Run after ``kedro run --pipeline=synthetic_corpus``::

    python -m benchmarks --only footprint
    python -m benchmarks.footprint [--separator local|oracle] [--reruns 1]

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
stored format) or float16 (the alternative). The raw corpus is sized per folder.

Writes ``footprint.json`` and ``footprint.md`` in the results folder. The whole
default run (install apart, every stage, a rerun) is ``benchmarks/first_run.py``'s.
"""

from __future__ import annotations

import argparse
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
import yaml

from benchmarks.suite import ROOT, figure, results_dir

CORPUS = Path("data") / "01_raw" / "synthetic"
SEPARATOR = Path("data") / "06_models" / "separator"
OUTPUTS = "mix_log_mel,stems_log_mel,separation_sdr"

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


def scratch_project(folder: Path, separator: str) -> str:
    """A copy of the conf with the repo's corpus linked in; returns the separator used."""
    shutil.copy(ROOT / "pyproject.toml", folder / "pyproject.toml")
    shutil.copytree(ROOT / "conf" / "base", folder / "conf" / "base")
    (folder / "conf" / "local").mkdir()
    (folder / "src").mkdir()
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


def run_stages(project: Path, separator: str) -> dict:
    """The default run's stages up to the features, in one measured process."""
    command = [
        sys.executable,
        "-c",
        _MEASURED,
        sys.executable,
        "-m",
        "kedro",
        "run",
        "--pipeline=features",
        f"--to-outputs={OUTPUTS}",
    ]
    if separator == "oracle":
        command.append("--params=separation.separator.kind=oracle")
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
    """Each stored audio artifact against the same audio saved as float32.

    The stems are the one audio artifact a run stores: the clips and the mix stay in
    memory (cut from the corpus' choruses when looked up); versions of either left
    by older code are sized too.
    """
    from emomucs.datasets import AudioSetDataset

    sizes = {}
    for relative in (
        "data/02_intermediate/clips.npz",
        "data/03_primary/mix.npz",
        "data/03_primary/stems.npz",
    ):
        if not any((project / relative).glob("*/*")):
            continue
        path = latest(project, relative)
        with tempfile.TemporaryDirectory() as scratch:
            copy = Path(scratch) / "float32.npz"
            dataset = AudioSetDataset(str(copy), codec="float32")
            dataset.save(AudioSetDataset(str(path)).load())
            # a per-track version (stems) is its manifest and the track files
            tracks = path.parent / f"{path.stem}.tracks"
            stored = path.stat().st_size + sum(
                file.stat().st_size for file in tracks.glob("*") if file.is_file()
            )
            sizes[Path(relative).name] = {
                "stored": stored,
                "float32": copy.stat().st_size,
            }
    return sizes


def log_mel_effect(project: Path, tracks: int) -> dict[str, dict[str, float]]:
    """Largest log-mel change (dB) when the true stems and the mix are stored."""
    from kedro.config import OmegaConfigLoader

    from emomucs import audio_codec
    from emomucs.datasets import AudioFolderDataset
    from emomucs.pipelines.clipping.nodes import clip_choruses
    from emomucs.pipelines.features.nodes import log_mel
    from emomucs.pipelines.separation.nodes import cut_oracle_stems

    params = OmegaConfigLoader(str(project / "conf"), base_env="base")["parameters"]
    settings = dict(params["features"]["log_mel"])
    rate = int(params["features"]["sample_rate"])
    # the run keeps no clips: cut them again from the choruses, as the run did
    candidates = pd.read_parquet(
        latest(project, "data/02_intermediate/candidate_tracks.parquet")
    )
    choruses = AudioFolderDataset(str(project / CORPUS / "PMEmo2019" / "chorus")).load()
    clips, _, _ = clip_choruses(candidates, choruses, params["clipping"])
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


def corpus_sizes() -> dict[str, int]:
    """The raw corpus' bytes per folder as written: choruses (16-bit stereo FLAC),
    true stems (mono 24-bit FLAC), the separator's multitracks, everything else."""
    root = ROOT / CORPUS
    folders = {
        "chorus_bytes": root / "PMEmo2019" / "chorus",
        "stems_bytes": root / "PMEmo2019" / "stems",
        "multitrack_bytes": root / "multitrack",
    }
    sizes = {
        name: sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        for name, folder in folders.items()
    }
    every = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    return {**sizes, "other_bytes": every - sum(sizes.values())}


def _mb(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def markdown(result: dict) -> str:
    runs = result["runs"]
    lines = [
        "# Footprint of the default run's data stages",
        "",
        f"`python -m benchmarks.footprint --separator {result['separator_option']}` "
        f"on {result['tracks']} tracks of the synthetic corpus; separator: "
        f"{result['separator']}; {result['machine']['cpus']} CPUs, load "
        f"{result['machine']['load_before']} before. Stages: `kedro run "
        f"--pipeline=features --to-outputs={OUTPUTS}`.",
        "",
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
        f"Raw corpus (`{CORPUS}`, FLAC): choruses {_mb(corpus['chorus_bytes'])}, "
        f"true stems {_mb(corpus['stems_bytes'])}, multitracks "
        f"{_mb(corpus['multitrack_bytes'])}, the rest {_mb(corpus['other_bytes'])}.",
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
    parser.add_argument("--separator", choices=["local", "oracle"], default="local")
    parser.add_argument("--reruns", type=int, default=1)
    parser.add_argument("--tracks", type=int, default=16, help="for the log-mel check")
    parser.add_argument("--keep", type=Path, default=None, help="keep the scratch here")
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help="JSON {label, run} of the same stages measured on older code, shown beside",
    )
    args = parser.parse_args(argv)
    if not (ROOT / CORPUS / "PMEmo2019" / "metadata.csv").is_file():
        raise SystemExit("run `kedro run --pipeline=synthetic_corpus` first")
    sys.path.insert(0, str(ROOT / "src"))
    load_before = [round(value, 2) for value in os.getloadavg()]
    scratch = Path(tempfile.mkdtemp(prefix="footprint-"))
    try:
        project = args.keep or scratch
        project.mkdir(parents=True, exist_ok=True)
        separator = scratch_project(project, args.separator)
        runs = []
        for _ in range(1 + args.reruns):
            run = run_stages(project, args.separator)
            run["disk"] = disk_usage(project / "data")
            runs.append(run)
        tracks = len(
            pd.read_csv(latest(project, "data/02_intermediate/clip_table.csv"))
        )
        result = {
            "separator_option": args.separator,
            "separator": separator,
            "tracks": tracks,
            "runs": runs,
            "float32": float32_sizes(project),
            "log_mel_effect": log_mel_effect(project, args.tracks),
            "corpus": corpus_sizes(),
            "before": json.loads(args.before.read_text()) if args.before else None,
            "machine": {
                "cpus": os.cpu_count(),
                "load_before": load_before,
                "load_after": [round(value, 2) for value in os.getloadavg()],
                "python": platform.python_version(),
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
    run = result["runs"][0]
    rows = [
        figure(
            "data stages up to the features: wall time",
            run["seconds"],
            "s",
            note=f"{result['tracks']} tracks, separator {result['separator']}",
        ),
        figure(
            "data stages up to the features: peak RSS",
            run["peak_rss_mb"],
            "MB",
            goal="≤ 2048 MB (whole default run)",
            met=run["peak_rss_mb"] <= 2048,
        ),
        figure(
            "data/ after the data stages (corpus excluded)",
            round(sum(result["runs"][-1]["disk"].values()) / 1e6, 1),
            "MB",
            note="after the reruns too" if len(result["runs"]) > 1 else "",
        ),
    ]
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
