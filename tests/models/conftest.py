"""Shared settings for the model tests: one thread, tiny inputs."""

import pytest
import torch

SOURCES = ["drums", "bass", "other", "vocals"]
N_MELS, N_FRAMES, BATCH = 40, 128, 3
# A WaveC1D small enough for tests: 128 frames of 256-sample filters, hop 128.
WAVE_KWARGS = {"n_samples": 127 * 128, "kernel_size": 256, "stride": 128}

# Source model name → (kwargs, shape of one source's input without the batch).
SOURCE_CONFIGS = {
    "C1D": ({"n_mels": N_MELS, "n_frames": N_FRAMES}, (N_MELS, N_FRAMES)),
    "C2D": (
        {"n_mels": N_MELS, "n_frames": N_FRAMES, "hidden_layer": True},
        (N_MELS, N_FRAMES),
    ),
    "WaveC1D": (WAVE_KWARGS, (WAVE_KWARGS["n_samples"],)),
}


@pytest.fixture(autouse=True)
def _one_thread_seeded():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)
