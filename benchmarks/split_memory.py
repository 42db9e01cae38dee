"""Memory of one training split, as a local worker holds it.

    python -m benchmarks.split_memory

Each kind runs in a fresh interpreter (one torch thread, as a worker): the memory
after importing the training code, with the default corpus' inputs (128 tracks × 4
stems × 40 bands × 862 frames, float32), and the peak after training one split of
EmoMucs late full (60 training, 30 validation tracks, batch 16, base recipe
networks) for two epochs. Writes ``benchmarks/results/split_memory.json`` and
``.md``. What the first run's peak memory is made of: docs/performance.md.
"""

from __future__ import annotations

import json
import subprocess
import sys

from benchmarks.suite import ROOT, results_dir

_CHILD = """
import json, re, resource, sys, torch
from emomucs.training import ExperimentSpec, TrainOptions
from emomucs.training.loop import train_model

def now():
    text = open("/proc/self/smaps_rollup").read()
    return int(re.search(r"^Pss:\\s+(\\d+) kB", text, flags=re.M).group(1)) // 1024

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024

network = sys.argv[1]
torch.set_num_threads(1)
figures = {"imports_pss_mb": now()}
x, y = torch.randn(128, 4, 40, 862), torch.rand(128, 2)
figures["inputs_pss_mb"] = now()
kwargs = {"C2D": {"n_filters": 8}, "C1D": {"pooling": "mean"}}[network]
spec = ExperimentSpec.from_params({
    "model": "EmoMucs", "source_model": network, "fusion": "late", "strategy": "full",
    "sources": ["drums", "bass", "other", "vocals"], "model_kwargs": kwargs,
})
model = spec.build({"n_mels": 40, "n_frames": 862})
options = TrainOptions(
    max_epochs=2, patience=5, batch_size=16, eval_batch_size=32, progress=False
)
train_model(
    model, (x[:60], y[:60]), (x[60:90], y[60:90]), options,
    generator=torch.Generator().manual_seed(0), label=network,
)
figures["peak_rss_mb"] = peak()
print(json.dumps(figures))
"""


def main(argv: list[str] | None = None) -> dict:
    result = {}
    for network in ("C1D", "C2D"):
        output = subprocess.check_output(
            [sys.executable, "-c", _CHILD, network],
            env={"PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"},
            text=True,
        )
        result[f"EmoMucs-{network} late full"] = json.loads(output.splitlines()[-1])
    folder = results_dir()
    (folder / "split_memory.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Memory of one training split (a local worker)",
        "",
        "`python -m benchmarks.split_memory`: a fresh interpreter per row, one torch "
        "thread, the default corpus' input size (128 tracks), one split trained "
        "for two epochs (60 training tracks, batch 16).",
        "",
        "| variant | after imports (PSS MB) | with the inputs (PSS MB) | peak (RSS MB) |",
        "|---|---|---|---|",
    ]
    for name, figures in result.items():
        lines.append(
            f"| {name} | {figures['imports_pss_mb']} | {figures['inputs_pss_mb']} | "
            f"{figures['peak_rss_mb']} |"
        )
    (folder / "split_memory.md").write_text("\n".join(lines) + "\n")
    sys.stdout.write("\n".join(lines) + "\n")
    return result


if __name__ == "__main__":
    main()
