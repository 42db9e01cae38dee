"""Applying a separator: shapes, rates, channels, batching, and resuming from the cache."""

from __future__ import annotations

import numpy as np
import pytest

from emomucs import SOURCES
from emomucs.separation import (
    ApplyOptions,
    LoadedSeparator,
    SeparatorSpec,
    StemsCache,
    load_separator,
    separate,
    separate_batch,
    separate_tracks,
)
from emomucs.separation.separate import source_matrix

from .tiny import tiny_htdemucs


@pytest.fixture
def separator(tiny_repo) -> LoadedSeparator:
    return load_separator(SeparatorSpec("local", "tiny", str(tiny_repo)))


def _clips(count: int, channels: int, rate: int, seconds: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    return {
        100 + index: (
            0.1 * rng.standard_normal((channels, int(rate * seconds)))
        ).astype(np.float32)
        for index in range(count)
    }


def test_mono_clips_at_another_rate_give_mono_stems_at_the_output_rate(separator):
    (clip,) = _clips(1, channels=1, rate=11025, seconds=2.0).values()
    (stems,) = separate_batch(separator.model, [clip], 11025, 16000, ApplyOptions())
    assert stems.shape == (4, 1, 32000) and stems.dtype == np.float32
    assert np.isfinite(stems).all() and np.abs(stems).max() > 0


def test_batching_does_not_change_the_stems(separator):
    clips = list(_clips(3, channels=2, rate=8000, seconds=1.2).values())
    options = ApplyOptions(batch_size=3)
    together = separate_batch(separator.model, clips, 8000, 8000, options)
    alone = [
        separate_batch(separator.model, [clip], 8000, 8000, options)[0]
        for clip in clips
    ]
    for batched, single in zip(together, alone, strict=True):
        np.testing.assert_allclose(batched, single, atol=1e-5)


def test_normalisation_is_scale_free_and_adds_a_dc_offset_once(separator):
    (clip,) = _clips(1, channels=2, rate=8000, seconds=1.0).values()
    clip = clip - clip.mean()
    plain = separate_batch(
        separator.model, [clip], 8000, 8000, ApplyOptions(normalize=False)
    )
    normal = separate_batch(separator.model, [clip], 8000, 8000, ApplyOptions())
    # HTDemucs standardises its input too, so standardising first changes nothing
    np.testing.assert_allclose(plain[0], normal[0], atol=1e-4)
    shifted = separate_batch(separator.model, [clip + 0.05], 8000, 8000, ApplyOptions())
    # the offset goes once into the sum of the stems, not once into each stem
    np.testing.assert_allclose(shifted[0].sum(0) - normal[0].sum(0), 0.05, atol=1e-4)


def test_extra_model_sources_fold_into_other():
    matrix = source_matrix(("drums", "bass", "other", "vocals", "guitar", "piano"))
    assert matrix[SOURCES.index("other")].tolist() == [0, 0, 1, 0, 1, 1]
    assert matrix.sum() == 6
    with pytest.raises(ValueError, match="lack"):
        source_matrix(("drums", "bass", "vocals"))


def test_a_killed_run_resumes_without_recomputing_finished_tracks(
    separator, tmp_path, monkeypatch
):
    clips = _clips(5, channels=2, rate=8000, seconds=1.0)
    options = ApplyOptions(batch_size=2)
    reference = separate_tracks(
        clips, 8000, separator, 8000, options, StemsCache(None), progress=False
    )
    real = separate.separate_batch
    seen: list[int] = []

    def killed_after_two_batches(model, batch, *args, **kwargs):
        if len(seen) >= 4:
            raise KeyboardInterrupt  # as when the run is killed mid-way
        seen.extend(range(len(batch)))
        return real(model, batch, *args, **kwargs)

    cache = StemsCache(tmp_path / "cache")
    monkeypatch.setattr(separate, "separate_batch", killed_after_two_batches)
    with pytest.raises(KeyboardInterrupt):
        separate_tracks(clips, 8000, separator, 8000, options, cache, progress=False)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 4
    assert not list((tmp_path / "cache").glob(".*"))  # no partial files left

    computed: list[int] = []

    def counting(model, batch, *args, **kwargs):
        computed.append(len(batch))
        return real(model, batch, *args, **kwargs)

    monkeypatch.setattr(separate, "separate_batch", counting)
    resumed = separate_tracks(
        clips, 8000, separator, 8000, options, cache, progress=False
    )
    assert sum(computed) == 1  # only the fifth track
    assert sorted(resumed) == sorted(clips)
    for music_id, stems in reference.items():
        np.testing.assert_allclose(resumed[music_id], stems, atol=1e-5)


def test_another_separator_or_clip_never_reuses_cached_stems(separator, tmp_path):
    clips = _clips(2, channels=2, rate=8000, seconds=1.0)
    cache = StemsCache(tmp_path / "cache")
    first = separate_tracks(
        clips, 8000, separator, 8000, ApplyOptions(), cache, progress=False
    )
    other = LoadedSeparator(tiny_htdemucs(seed=5), identity="local:tiny:another")
    second = separate_tracks(
        clips, 8000, other, 8000, ApplyOptions(), cache, progress=False
    )
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 4
    assert not np.allclose(first[100], second[100])
    changed = {**clips, 100: clips[100] * 0.5}
    separate_tracks(
        changed, 8000, separator, 8000, ApplyOptions(), cache, progress=False
    )
    assert len(list((tmp_path / "cache").glob("100-*.npz"))) == 3
    separate_tracks(
        clips, 8000, separator, 16000, ApplyOptions(), cache, progress=False
    )
    assert (
        len(list((tmp_path / "cache").glob("*.npz"))) == 7
    )  # output rate is in the key


def test_random_shifts_are_reproducible_per_clip(separator):
    clips = _clips(2, channels=2, rate=8000, seconds=1.0)
    options = ApplyOptions(shifts=2, batch_size=4)
    run = lambda data: separate_tracks(  # noqa: E731
        data, 8000, separator, 8000, options, StemsCache(None), seed=3, progress=False
    )
    both, alone = run(clips), run({101: clips[101]})
    np.testing.assert_allclose(both[101], alone[101], atol=1e-6)


def test_the_seed_keys_the_cache_only_with_random_shifts(separator, tmp_path):
    clips = _clips(1, channels=2, rate=8000, seconds=1.0)
    cache = StemsCache(tmp_path)
    for shifts, seed in [(0, 1), (0, 2), (1, 1), (1, 2)]:
        separate_tracks(
            clips,
            8000,
            separator,
            8000,
            ApplyOptions(shifts=shifts),
            cache,
            seed=seed,
            progress=False,
        )
    assert len(list(tmp_path.glob("*.npz"))) == 3  # one without shifts, two with


def test_changed_separation_code_separates_again_and_says_why(
    separator, tmp_path, monkeypatch, caplog
):
    from emomucs.separation import cache as stems_cache

    clips = _clips(2, channels=2, rate=8000, seconds=1.0)
    cache = StemsCache(tmp_path)
    run = lambda: separate_tracks(  # noqa: E731
        clips, 8000, separator, 8000, ApplyOptions(), cache, progress=False
    )
    computed: list[int] = []
    real = separate.separate_batch

    def counting(model, batch, *args, **kwargs):
        computed.append(len(batch))
        return real(model, batch, *args, **kwargs)

    monkeypatch.setattr(separate, "separate_batch", counting)
    run()
    with caplog.at_level("INFO", logger="emomucs.separation.separate"):
        run()
    assert sum(computed) == 2  # same key: both tracks reused
    assert "do not match" not in caplog.text

    monkeypatch.setattr(stems_cache, "source_fingerprint", lambda parts: "edited")
    caplog.clear()
    with caplog.at_level("INFO", logger="emomucs.separation.separate"):
        run()
    assert sum(computed) == 4  # a fix in separation/ separates again
    (line,) = [r.getMessage() for r in caplog.records if "do not match" in r.message]
    assert "2 cached tracks" in line and "code (" in line and "-> edited)" in line
    assert "demucs" not in line and "device" not in line
    assert len(list(tmp_path.glob("*.npz"))) == 4


def test_a_fully_cached_run_decodes_no_stems_until_they_are_read(
    separator, tmp_path, monkeypatch
):
    from emomucs import track_file

    clips = _clips(3, channels=2, rate=8000, seconds=1.0)
    cache = StemsCache(tmp_path / "cache")
    first = separate_tracks(
        clips, 8000, separator, 8000, ApplyOptions(), cache, progress=False
    )
    expected = {music_id: np.asarray(first[music_id]) for music_id in clips}
    decoded: list[str] = []
    real_read = track_file.read

    def counting_read(source):
        decoded.append(str(source))
        return real_read(source)

    monkeypatch.setattr(track_file, "read", counting_read)
    again = separate_tracks(
        clips, 8000, separator, 8000, ApplyOptions(), cache, progress=False
    )
    assert decoded == []  # shapes come from the entries' headers
    assert {m: again.shape(m) for m in clips} == {m: expected[m].shape for m in clips}
    np.testing.assert_array_equal(again[101], expected[101])
    assert len(decoded) == 1


def test_an_entry_whose_audio_is_damaged_is_separated_again(separator, tmp_path):
    clips = _clips(2, channels=1, rate=8000, seconds=1.0)
    cache = StemsCache(tmp_path / "cache")
    separate_tracks(clips, 8000, separator, 8000, ApplyOptions(), cache, progress=False)
    entry = sorted((tmp_path / "cache").glob("100-*.npz"))[0]
    entry.write_bytes(entry.read_bytes()[:100])  # a truncated file
    again = separate_tracks(
        clips, 8000, separator, 8000, ApplyOptions(), cache, progress=False
    )
    assert np.asarray(again[100]).shape == np.asarray(again[101]).shape


def test_separation_on_two_workers_gives_the_same_stems(separator, tmp_path):
    clips = _clips(5, channels=2, rate=8000, seconds=1.0)
    options = ApplyOptions(batch_size=2, device="cpu")
    alone = separate_tracks(
        clips, 8000, separator, 8000, options, StemsCache(tmp_path / "alone")
    )
    pooled = separate_tracks(
        clips,
        8000,
        separator,
        8000,
        options,
        StemsCache(tmp_path / "pooled"),
        workers=2,
    )
    assert sorted(pooled) == sorted(alone)
    for music_id, stems in alone.items():
        np.testing.assert_array_equal(pooled[music_id], stems)
