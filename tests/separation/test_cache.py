"""The stems cache: keys cover every input, writes are atomic, damage is recomputed."""

from __future__ import annotations

import numpy as np

from emomucs.audio_codec import QUANTISATION_STEP
from emomucs.separation import StemsCache, audio_digest


def test_keys_change_with_track_clip_separator_and_config():
    base = StemsCache.key(1, "clip", "sep", {"shifts": 0})
    assert base == StemsCache.key(1, "clip", "sep", {"shifts": 0})
    assert base != StemsCache.key(2, "clip", "sep", {"shifts": 0})
    assert base != StemsCache.key(1, "clip2", "sep", {"shifts": 0})
    assert base != StemsCache.key(1, "clip", "sep2", {"shifts": 0})
    assert base != StemsCache.key(1, "clip", "sep", {"shifts": 1})


def test_audio_digest_sees_samples_shape_and_rate():
    audio = np.zeros((2, 10), np.float32)
    assert audio_digest(audio, 8000) != audio_digest(audio, 16000)
    assert audio_digest(audio, 8000) != audio_digest(audio.reshape(1, 20), 8000)
    changed = audio.copy()
    changed[1, 9] = 1e-6
    assert audio_digest(audio, 8000) != audio_digest(changed, 8000)


def test_round_trip_leaves_no_temporary_files(tmp_path):
    cache = StemsCache(tmp_path / "c")
    stems = np.arange(24, dtype=np.float32).reshape(4, 1, 6)
    assert cache.load(7, "k") is None
    cache.save(7, "k", stems)
    # 16-bit FLAC scaled to each stem's peak: within half a step of that peak
    peaks = np.abs(stems).max(axis=-1, keepdims=True)
    error = np.abs(cache.load(7, "k") - stems)
    assert (error <= peaks * QUANTISATION_STEP / 2 * 1.001).all()
    assert error.max() > 0  # stored as 16-bit, not float32
    assert [path.name for path in (tmp_path / "c").iterdir()] == ["7-k.npz"]


def test_damaged_entry_reads_as_missing(tmp_path):
    cache = StemsCache(tmp_path)
    cache.path(3, "k").write_bytes(b"\x93NUMPY garbage")
    assert cache.load(3, "k") is None


def test_disabled_cache_stores_nothing(tmp_path):
    cache = StemsCache(None)
    cache.save(1, "k", np.zeros(3))
    assert cache.load(1, "k") is None and not cache.enabled
