import pytest

from emomucs.pipelines.features.nodes import compute_log_mel
from tests.training.synthetic import make_corpus

FEATURE_OPTIONS = {
    "sample_rate": 22050,
    "length_tolerance_s": 0.1,
    "log_mel": {"n_mels": 40, "n_fft": 1024, "hop_length": 512, "top_db": 80.0},
}


@pytest.fixture(scope="package")
def small_corpus():
    """12 tracks of 2 s: labels, stems log-mels."""
    table, _, stems = make_corpus(n_tracks=12, seconds=2.0, seed=3)
    return table, compute_log_mel(stems, FEATURE_OPTIONS)
