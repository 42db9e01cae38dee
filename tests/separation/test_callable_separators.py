"""Separators named by an import path: a plain function (the harmonic–percussive
split) or a model with Demucs' interface."""

from __future__ import annotations

import numpy as np
import pytest

from emomucs.separation import (
    ApplyOptions,
    CallableSeparator,
    LoadedSeparator,
    SeparatorSpec,
    StemsCache,
    load_separator,
    separate_tracks,
)
from emomucs.separation.hpss import separate_harmonic_percussive
from emomucs.separation.separators import SeparatorUnavailableError

HPSS = "emomucs.separation.hpss:separate_harmonic_percussive"
RATE = 8000


def _clip(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """A stereo tone plus clicks: something harmonic and something percussive."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    tone = 0.3 * np.sin(2 * np.pi * 220 * t)
    clicks = np.zeros_like(t)
    clicks[:: RATE // 4] = 1.0
    mono = (tone + clicks + 0.01 * rng.standard_normal(t.shape)).astype(np.float32)
    return np.stack([mono, 0.5 * mono])


def test_hpss_gives_two_stems_that_sum_to_the_input():
    clip = _clip()
    stems = separate_harmonic_percussive(clip, RATE)
    assert list(stems) == ["drums", "harmonic"]
    assert all(s.shape == (1, clip.shape[-1]) for s in stems.values())
    total = stems["drums"] + stems["harmonic"]
    mono = clip.mean(axis=0)
    assert np.max(np.abs(total[0] - mono)) < 1e-4 * np.max(np.abs(mono)) + 1e-6
    # the clicks go to drums, the tone to harmonic: each stem holds most of its part
    clicks = np.zeros_like(mono)
    clicks[:: RATE // 4] = 0.75
    energy = {k: float(np.sum(v**2)) for k, v in stems.items()}
    assert energy["harmonic"] > 0.5 * float(np.sum((mono - clicks) ** 2))
    at_clicks = np.abs(stems["drums"][0][:: RATE // 4]).mean()
    between = np.abs(stems["drums"][0][RATE // 8 :: RATE // 4]).mean()
    assert at_clicks > 5 * between


def test_a_plain_function_separates_through_the_shared_code_and_cache(tmp_path):
    separator = load_separator(SeparatorSpec(kind="callable", target=HPSS))
    assert isinstance(separator, CallableSeparator)
    assert separator.stem_names == ("drums", "harmonic")
    assert separator.identity.startswith(f"callable:{HPSS}:")
    clips = {1: _clip(seed=1), 2: _clip(seed=2)}
    cache = StemsCache(tmp_path)
    stems = separate_tracks(clips, RATE, separator, 4000, ApplyOptions(), cache)
    assert stems[1].shape == (2, 1, 4000)  # (stems, mono, 1 s at 4 kHz)
    assert len(list(tmp_path.glob("*.npz"))) == 2
    # other options are another separator: other identity, other cache entries
    other = load_separator(
        SeparatorSpec(kind="callable", target=HPSS, options={"kernel_size": 9})
    )
    assert other.identity != separator.identity
    separate_tracks(clips, RATE, other, 4000, ApplyOptions(), cache)
    assert len(list(tmp_path.glob("*.npz"))) == 4


def test_a_function_returning_other_stems_is_refused_naming_the_track():
    def other_stems(audio, sample_rate):
        return {"b": audio}

    separator = CallableSeparator(other_stems, "callable:test", ("a",))
    with pytest.raises(RuntimeError, match=r"track 7: the separator returned \['b'\]"):
        separate_tracks(
            {7: _clip()}, RATE, separator, RATE, ApplyOptions(), StemsCache(None)
        )


def test_a_class_with_demucs_interface_is_applied_like_demucs():
    options = {
        "sources": ["drums", "bass", "other", "vocals"],
        "audio_channels": 2,
        "channels": 8,
        "depth": 2,
        "nfft": 512,
        "t_layers": 1,
        "t_heads": 2,
        "samplerate": RATE,
        "segment": 1,
    }
    spec = SeparatorSpec(
        kind="callable", target="demucs.htdemucs:HTDemucs", options=options
    )
    separator = load_separator(spec)
    assert isinstance(separator, LoadedSeparator)
    stems = separate_tracks(
        {3: _clip()},
        RATE,
        separator,
        RATE,
        ApplyOptions(batch_size=1),
        StemsCache(None),
    )
    assert stems[3].shape == (4, 1, RATE)
    assert np.isfinite(stems[3]).all()


def test_targets_that_are_not_separators_are_refused():
    with pytest.raises(SeparatorUnavailableError, match="cannot be imported"):
        load_separator(SeparatorSpec(kind="callable", target="emomucs.nowhere:f"))
    with pytest.raises(SeparatorUnavailableError, match="is a class"):
        load_separator(SeparatorSpec(kind="callable", target="collections:OrderedDict"))
    with pytest.raises(ValueError, match="package.module:attribute"):
        SeparatorSpec(kind="callable", target="emomucs.separation.hpss")
