"""Memory of one training split, as a local worker holds it.

    python -m benchmarks.split_memory

Each row runs in a fresh interpreter (one torch thread, as a worker): the memory
after importing the training code, with the default corpus' inputs (128 tracks × 4
stems × 40 bands × 862 frames, float32), the tensors one training step at batch 16
keeps for its backward pass, and the peak after training one split of EmoMucs late
full (60 training, 30 validation tracks, batch 16, base recipe networks) for two
epochs, with its time. EmoMucs-C2D also runs with PyTorch's own max-pool in place of
C2D's (which keeps only its argmax indices), and under a fixed glibc mmap threshold
(``MALLOC_MMAP_THRESHOLD_``): at 64 kB every feature map is returned to the system
when freed, so the peak RSS is the peak of live memory; at 8 MB only the largest
maps are. Writes ``benchmarks/results/split_memory.json`` and ``.md``. What the first
run's peak memory is made of: docs/performance.md.
"""

from __future__ import annotations

import json
import subprocess
import sys

from benchmarks.suite import ROOT, results_dir

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


ROWS = [
    ("EmoMucs-C1D late full", "C1D", "indices", None),
    ("EmoMucs-C2D late full", "C2D", "indices", None),
    ("EmoMucs-C2D late full, PyTorch's max-pool", "C2D", "pytorch", None),
    ("EmoMucs-C2D late full, mmap threshold 64 kB", "C2D", "indices", 65536),
    (
        "EmoMucs-C2D late full, PyTorch's max-pool, mmap threshold 64 kB",
        "C2D",
        "pytorch",
        65536,
    ),
    ("EmoMucs-C2D late full, mmap threshold 8 MB", "C2D", "indices", 8 * 2**20),
]
"""Label, source network, C2D's pool (``indices``: as built; ``pytorch``: nn.MaxPool2d),
glibc's fixed mmap threshold in bytes (None: glibc's adaptive default)."""


def main(argv: list[str] | None = None) -> dict:
    result = {}
    for label, network, pool, threshold in ROWS:
        env = {"PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
        if threshold is not None:
            env["MALLOC_MMAP_THRESHOLD_"] = str(threshold)
        output = subprocess.check_output(
            [sys.executable, "-c", _CHILD, network, pool], env=env, text=True
        )
        result[label] = json.loads(output.splitlines()[-1])
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
        "process holds.",
        "",
        "| variant | after imports (PSS MB) | with the inputs (PSS MB) | saved for "
        "backward, one step (MB) | peak (RSS MB) | over the inputs (MB) | training s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, figures in result.items():
        lines.append(
            f"| {name} | {figures['imports_pss_mb']} | {figures['inputs_pss_mb']} | "
            f"{figures['saved_for_backward_mb']} | {figures['peak_rss_mb']} | "
            f"{figures['peak_rss_mb'] - figures['inputs_rss_mb']} | "
            f"{figures['train_s']} |"
        )
    (folder / "split_memory.md").write_text("\n".join(lines) + "\n")
    sys.stdout.write("\n".join(lines) + "\n")
    return result


if __name__ == "__main__":
    main()
