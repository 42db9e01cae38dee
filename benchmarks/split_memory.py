"""Memory of one training split, as a local worker holds it.

    python -m benchmarks.split_memory

Each row runs in a fresh interpreter (one torch thread, as a worker): the memory
after importing the training code, with the default corpus' inputs (128 tracks × 4
stems × 40 bands × 862 frames, float32), the tensors one training step at batch 16
keeps for its backward pass, and the peak after training one split of EmoMucs late
full (60 training, 30 validation tracks, batch 16, base recipe networks) for two
epochs, with its time. EmoMucs-C2D also runs with PyTorch's own max-pool in place of
C2D's (which keeps only its argmax indices), under a fixed glibc mmap threshold
(``MALLOC_MMAP_THRESHOLD_``): at 64 kB every feature map is returned to the system
when freed, so the peak RSS is the peak of live memory; at 8 MB only the largest
maps are; and with malloc's blocks on transparent huge pages
(``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``). Rows run interleaved, ``--repeats`` rounds (default 5), so that a busy
moment of the host falls on every row alike: each figure is the median over rounds,
training time also with its range and its ratio to the plain EmoMucs-C2D row of the
same round. Writes ``benchmarks/results/split_memory.json`` and ``.md``. What the
first run's peak memory is made of: docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from benchmarks.suite import ROOT, figure, results_dir

QUICK_ARGS = ["--repeats", "1"]

_CHILD = """
import json, re, resource, sys, time, torch
from torch import nn
from emomucs.models.c2d import MaxPool2dKeepingIndices
from emomucs.training import ExperimentSpec, TrainOptions
from emomucs.training.loop import train_model

def now():
    text = open("/proc/self/smaps_rollup").read()
    return int(re.search(r"^Pss:\\s+(\\d+) kB", text, flags=re.M).group(1)) // 1024

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024

network, pool = sys.argv[1], sys.argv[2]
torch.set_num_threads(1)
figures = {"imports_pss_mb": now()}
x, y = torch.randn(128, 4, 40, 862), torch.rand(128, 2)
figures["inputs_pss_mb"] = now()
status = open("/proc/self/status").read()
rss_kb = re.search(r"^VmRSS:\\s+(\\d+) kB", status, flags=re.M).group(1)
figures["inputs_rss_mb"] = int(rss_kb) // 1024
kwargs = {"C2D": {"n_filters": 8}, "C1D": {"pooling": "mean"}}[network]
spec = ExperimentSpec.from_params({
    "model": "EmoMucs", "source_model": network, "fusion": "late", "strategy": "full",
    "sources": ["drums", "bass", "other", "vocals"], "model_kwargs": kwargs,
})
model = spec.build({"n_mels": 40, "n_frames": 862})
if pool == "pytorch":
    for net in model.source_nets.values():
        for i, layer in enumerate(net.feature_net):
            if isinstance(layer, MaxPool2dKeepingIndices):
                net.feature_net[i] = nn.MaxPool2d(layer.kernel_size)
storages = {}

def pack(tensor):
    storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
    return tensor

with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
    model(x[:16])
figures["saved_for_backward_mb"] = round(sum(storages.values()) / 2**20, 1)
started = time.perf_counter()
options = TrainOptions(
    max_epochs=2, patience=5, batch_size=16, eval_batch_size=32, progress=False
)
train_model(
    model, (x[:60], y[:60]), (x[60:90], y[60:90]), options,
    generator=torch.Generator().manual_seed(0), label=network,
)
figures["train_s"] = round(time.perf_counter() - started, 2)
figures["peak_rss_mb"] = peak()
print(json.dumps(figures))
"""


_FIXED_8MB = {"MALLOC_MMAP_THRESHOLD_": str(8 * 2**20)}
_HUGE_PAGES = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
ROWS = [
    ("EmoMucs-C1D late full", "C1D", "indices", {}),
    ("EmoMucs-C2D late full", "C2D", "indices", {}),
    ("EmoMucs-C2D late full, PyTorch's max-pool", "C2D", "pytorch", {}),
    (
        "EmoMucs-C2D late full, mmap threshold 64 kB",
        "C2D",
        "indices",
        {"MALLOC_MMAP_THRESHOLD_": "65536"},
    ),
    ("EmoMucs-C2D late full, mmap threshold 8 MB", "C2D", "indices", _FIXED_8MB),
    (
        "EmoMucs-C2D late full, huge pages",
        "C2D",
        "indices",
        _HUGE_PAGES,
    ),
    (
        "EmoMucs-C2D late full, mmap threshold 8 MB, huge pages (a run's default)",
        "C2D",
        "indices",
        {**_FIXED_8MB, **_HUGE_PAGES},
    ),
    (
        "EmoMucs-C2D late full, PyTorch's max-pool, mmap threshold 8 MB, huge pages",
        "C2D",
        "pytorch",
        {**_FIXED_8MB, **_HUGE_PAGES},
    ),
    (
        "EmoMucs-C1D late full, mmap threshold 8 MB, huge pages (a run's default)",
        "C1D",
        "indices",
        {**_FIXED_8MB, **_HUGE_PAGES},
    ),
]
"""Label, source network, C2D's pool (``indices``: as built; ``pytorch``: nn.MaxPool2d),
glibc's settings (``MALLOC_MMAP_THRESHOLD_`` fixes the mmap threshold as
``training.heap_mmap_threshold_mb`` does; ``GLIBC_TUNABLES`` as the local pool's
workers and ``scripts/run_offline.sh`` start)."""


BASELINE = "EmoMucs-C2D late full"
RUN_DEFAULTS = (
    "EmoMucs-C2D late full, mmap threshold 8 MB, huge pages (a run's default)"
)


def run_row(network: str, pool: str, glibc: dict[str, str]) -> dict:
    env = {"PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", **glibc}
    output = subprocess.check_output(
        [sys.executable, "-c", _CHILD, network, pool], env=env, text=True
    )
    return json.loads(output.splitlines()[-1])


def summarise_rounds(rounds: list[dict[str, dict]]) -> dict[str, dict]:
    """Median of every figure over rounds; training time also as range and as the
    median of its per-round ratio to the baseline row (same round, same host load)."""
    result = {}
    for label in rounds[0]:
        runs = [round_[label] for round_ in rounds]
        figures = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        times = [run["train_s"] for run in runs]
        figures["train_s_range"] = [min(times), max(times)]
        figures["train_s_ratio_to_baseline"] = round(
            statistics.median(
                round_[label]["train_s"] / round_[BASELINE]["train_s"]
                for round_ in rounds
            ),
            3,
        )
        figures["rounds"] = len(runs)
        result[label] = figures
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    rounds = []
    for _ in range(args.repeats):
        rounds.append({label: run_row(*row) for label, *row in ROWS})
    result = summarise_rounds(rounds)
    folder = results_dir()
    (folder / "split_memory.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Memory of one training split (a local worker)",
        "",
        "`python -m benchmarks.split_memory`: a fresh interpreter per row, one torch "
        "thread, the default corpus' input size (128 tracks), one split trained "
        "for two epochs (60 training tracks, batch 16). *Over the inputs*: the peak "
        "RSS less the RSS with the inputs, what training added. Under a fixed mmap "
        "threshold of 64 kB freed feature maps go back to the system, so that column "
        "is the peak of live memory; under glibc's adaptive default it is what the "
        "process holds. Each figure: the median of "
        f"{args.repeats} interleaved rounds; training time also as its range and as "
        "the median per-round ratio to the plain EmoMucs-C2D row.",
        "",
        "| variant | after imports (PSS MB) | with the inputs (PSS MB) | saved for "
        "backward, one step (MB) | peak (RSS MB) | over the inputs (MB) | training s "
        "(range) | training time / EmoMucs-C2D |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, figures in result.items():
        lines.append(
            f"| {name} | {figures['imports_pss_mb']} | {figures['inputs_pss_mb']} | "
            f"{figures['saved_for_backward_mb']} | {figures['peak_rss_mb']} | "
            f"{figures['peak_rss_mb'] - figures['inputs_rss_mb']:.0f} | "
            f"{figures['train_s']} ({figures['train_s_range'][0]}–"
            f"{figures['train_s_range'][1]}) | "
            f"{figures['train_s_ratio_to_baseline']:.2f} |"
        )
    (folder / "split_memory.md").write_text("\n".join(lines) + "\n")
    sys.stdout.write("\n".join(lines) + "\n")
    return result


def summarize(result: dict[str, dict]) -> list[dict]:
    """A C2D split under a run's glibc settings against glibc's defaults."""
    base, tuned = result[BASELINE], result[RUN_DEFAULTS]
    base_mb = base["peak_rss_mb"] - base["inputs_rss_mb"]
    tuned_mb = tuned["peak_rss_mb"] - tuned["inputs_rss_mb"]
    note = (
        f"median of {tuned['rounds']} interleaved rounds, one split, two epochs, "
        "batch 16; mmap threshold 8 MB and huge pages vs glibc's defaults"
    )
    return [
        figure(
            "EmoMucs-C2D late split: training time, a run's glibc settings vs default",
            tuned["train_s"],
            "s",
            reference=base["train_s"],
            ratio=round(1 / tuned["train_s_ratio_to_baseline"], 2),
            note=note,
        ),
        figure(
            "EmoMucs-C2D late split: memory training adds, a run's settings vs default",
            round(tuned_mb),
            "MB",
            reference=round(base_mb),
            ratio=round(base_mb / tuned_mb, 2),
            note="peak RSS less the RSS with the inputs; " + note,
        ),
    ]


if __name__ == "__main__":
    main()
