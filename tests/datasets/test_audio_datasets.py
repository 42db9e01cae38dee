"""The custom datasets: versioned AudioSet npz files and audio folders."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch
from kedro.io import DatasetError, Version

from emomucs.audio import AudioSet, LazyAudio
from emomucs.datasets import AudioFolderDataset, AudioSetDataset, TorchDataset


def _audio_set(value: float, sources=()) -> AudioSet:
    shape = (len(sources), 1, 8) if sources else (2, 8)
    return AudioSet(
        sample_rate=22050,
        audio={3: np.full(shape, value, np.float32), 11: np.zeros(shape, np.float32)},
        sources=tuple(sources),
        attrs={"separator": "oracle"},
    )


def test_audio_set_round_trip(tmp_path):
    dataset = AudioSetDataset(str(tmp_path / "stems.npz"))
    dataset.save(_audio_set(0.5, ("drums", "bass")))
    loaded = dataset.load()
    assert loaded.sample_rate == 22050 and loaded.sources == ("drums", "bass")
    assert loaded.attrs == {"separator": "oracle"} and loaded.music_ids == [3, 11]
    np.testing.assert_array_equal(loaded.audio[3], np.full((2, 1, 8), 0.5, np.float32))


def test_older_version_loads_back_after_a_newer_run(tmp_path):
    path = str(tmp_path / "clips.npz")
    AudioSetDataset(path, version=Version(None, "2026-01-01T00.00.00.000Z")).save(
        _audio_set(0.25)
    )
    AudioSetDataset(path, version=Version(None, "2026-02-01T00.00.00.000Z")).save(
        _audio_set(0.75)
    )
    latest = AudioSetDataset(path, version=Version(None, None)).load()
    older = AudioSetDataset(
        path, version=Version("2026-01-01T00.00.00.000Z", None)
    ).load()
    assert latest.audio[3][0, 0] == 0.75
    assert older.audio[3][0, 0] == 0.25


def test_a_version_identical_to_the_newest_shares_its_file(tmp_path):
    """Reruns save the same clips and stems again: the new version is a hard link to
    the newest one when the bytes match, and a file of its own when they do not."""
    path = tmp_path / "stems.npz"
    versions = [f"2026-0{m}-01T00.00.00.000Z" for m in (1, 2, 3, 4)]
    values = [0.25, 0.25, 0.75, 0.25]
    for version, value in zip(versions, values, strict=True):
        AudioSetDataset(str(path), version=Version(None, version)).save(
            _audio_set(value, ("drums",))
        )
    stats = [(path / v / "stems.npz").stat() for v in versions]
    assert stats[1].st_ino == stats[0].st_ino and stats[0].st_nlink == 2
    assert stats[2].st_ino != stats[1].st_ino  # other data
    assert stats[3].st_ino not in {stats[0].st_ino, stats[2].st_ino}  # newest is 0.75
    for version, value in zip(versions, values, strict=True):
        loaded = AudioSetDataset(str(path), version=Version(version, None)).load()
        assert loaded.audio[3][0, 0, 0] == value


def test_an_unreadable_earlier_version_does_not_stop_a_save(tmp_path):
    path = tmp_path / "stems.npz"
    first, second = "2026-01-01T00.00.00.000Z", "2026-01-02T00.00.00.000Z"
    AudioSetDataset(str(path), version=Version(None, first)).save(_audio_set(0.5))
    earlier = path / first / "stems.npz"
    earlier.unlink()
    earlier.symlink_to(tmp_path / "gone.npz")  # listed, but cannot be read
    AudioSetDataset(str(path), version=Version(None, second)).save(_audio_set(0.5))
    saved = AudioSetDataset(str(path), version=Version(second, None)).load()
    assert saved.audio[3][0, 0] == 0.5
    assert (path / second / "stems.npz").stat().st_nlink == 1


def test_torch_dataset_versions_share_identical_files(tmp_path):
    path = tmp_path / "features.pt"
    data = {"values": torch.arange(6.0), "sources": ["mix"]}
    for version in ("2026-01-01T00.00.00.000Z", "2026-01-02T00.00.00.000Z"):
        TorchDataset(str(path), version=Version(None, version)).save(data)
    first, second = (path / v / "features.pt" for v in sorted(os.listdir(path)))
    assert first.stat().st_ino == second.stat().st_ino
    loaded = TorchDataset(str(path), version=Version(None, None)).load()
    assert torch.equal(loaded["values"], data["values"])


def test_audio_set_dataset_refuses_other_types(tmp_path):
    with pytest.raises(DatasetError, match="saves an AudioSet"):
        AudioSetDataset(str(tmp_path / "x.npz")).save({"a": 1})


def test_audio_folder_round_trip_and_missing_folder(tmp_path):
    folder = AudioFolderDataset(str(tmp_path / "stems"))
    assert folder.load() == {}
    tone = np.sin(np.linspace(0, 100, 2205, dtype=np.float32))[None].repeat(2, 0) * 0.5
    folder.save({"12/drums": (tone, 22050), "12/bass": (tone * 0.5, 22050)})
    loaders = folder.load()
    assert sorted(loaders) == ["12/bass", "12/drums"]
    audio, rate = loaders["12/drums"]()
    assert rate == 22050 and audio.shape == (2, 2205)
    np.testing.assert_allclose(audio, tone, atol=1e-4)  # 16-bit quantisation
    assert not list((tmp_path / "stems" / "12").glob(".*"))  # no temporary left over


def test_audio_folder_writes_a_folders_subtype_and_keeps_17_bit_values(tmp_path):
    """``subtypes`` picks the subtype by the key's top folder: a 24-bit file holds
    the mean of two 16-bit channels exactly, where 16 bits would round it."""
    folder = AudioFolderDataset(
        str(tmp_path), format="FLAC", subtypes={"stems": "PCM_24"}
    )
    odd = np.array([[1.0, -3.0, 32767.0, -32768.0]], np.float32) / 32768 / 2
    folder.save({"chorus/1": (odd * 0 + 0.25, 8000), "stems/1/bass": (odd, 8000)})
    assert sf.info(tmp_path / "chorus" / "1.flac").subtype == "PCM_16"
    assert sf.info(tmp_path / "stems" / "1" / "bass.flac").subtype == "PCM_24"
    audio, _ = folder.load()["stems/1/bass"]()
    np.testing.assert_array_equal(audio, odd)  # half-steps of the 16-bit grid


def test_audio_folder_never_writes_outside_its_root(tmp_path):
    folder = AudioFolderDataset(str(tmp_path / "root"))
    with pytest.raises(DatasetError, match="outside"):
        folder.save({"../escape": (np.zeros((1, 10), np.float32), 8000)})
    assert not (tmp_path / "escape.wav").exists()


def _music_like(seconds: float = 3.0, rate: int = 22050) -> np.ndarray:
    """Four mono stems at very different levels: tones, decays and noise."""
    rng = np.random.default_rng(3)
    t = np.arange(int(seconds * rate)) / rate
    envelope = np.exp(-3 * (t % 0.5))
    stems = [
        0.8 * envelope * rng.standard_normal(t.size),  # drums: noise bursts
        0.5 * np.sin(2 * np.pi * 55 * t),  # bass
        0.05 * np.sin(2 * np.pi * 440 * t) * envelope,  # quiet other
        0.002 * np.sin(2 * np.pi * 880 * t + np.sin(2 * np.pi * 3 * t)),  # -54 dBFS
    ]
    return np.stack(stems)[:, None].astype(np.float32)


def test_flac_storage_moves_log_mel_by_under_half_a_db(tmp_path):
    """Stems stored as 16-bit FLAC scaled to each stem's peak: samples within half a
    step of that peak, log-mel within 0.5 dB (the largest difference measured on the
    default corpus is 0.38 dB, benchmarks/results/footprint.md), under 40% of the
    float32 bytes."""
    from emomucs.audio_codec import QUANTISATION_STEP
    from emomucs.pipelines.features.nodes import log_mel

    stems = _music_like()
    dataset = AudioSetDataset(str(tmp_path / "stems.npz"))
    dataset.save(AudioSet(22050, {5: stems}, ("drums", "bass", "other", "vocals")))
    stored = dataset.load().audio[5]
    assert stored.dtype == np.float32 and stored.shape == stems.shape
    peaks = np.abs(stems).max(axis=-1, keepdims=True)
    assert (np.abs(stored - stems) <= peaks * QUANTISATION_STEP / 2 * 1.001).all()
    settings = {"n_mels": 40, "n_fft": 1024, "hop_length": 512, "top_db": 80.0}
    before = log_mel(stems[:, 0], 22050, **settings)
    after = log_mel(stored[:, 0], 22050, **settings)
    assert np.abs(after - before).max() < 0.5
    assert (tmp_path / "stems.npz").stat().st_size < stems.nbytes / 2.5


def test_loading_is_lazy_and_shapes_need_no_decoding(tmp_path):
    dataset = AudioSetDataset(str(tmp_path / "clips.npz"))
    dataset.save(_audio_set(0.5))
    loaded = dataset.load()
    assert isinstance(loaded.audio, LazyAudio)
    assert loaded.shape(3) == (2, 8) and loaded.shape(11) == (2, 8)
    (tmp_path / "clips.npz").unlink()  # shapes come from the metadata already read
    assert loaded.shape(3) == (2, 8)
    with pytest.raises(FileNotFoundError):
        loaded.audio[3]


def test_float32_codec_and_files_written_before_flac_load_exactly(tmp_path):
    audio = _audio_set(0.3, ("drums",))
    audio.audio[3] = np.random.default_rng(0).standard_normal((1, 1, 8), np.float32)
    dataset = AudioSetDataset(str(tmp_path / "f32.npz"), codec="float32")
    dataset.save(audio)
    np.testing.assert_array_equal(dataset.load().audio[3], audio.audio[3])
    legacy = tmp_path / "legacy.npz"  # the layout of the float32-only format
    meta = {"sample_rate": 22050, "sources": ["drums"], "attrs": {}}
    np.savez(legacy, __meta__=np.array(json.dumps(meta)), track_3=audio.audio[3])
    loaded = AudioSetDataset(str(legacy)).load()
    assert loaded.music_ids == [3] and loaded.sources == ("drums",)
    np.testing.assert_array_equal(loaded.audio[3], audio.audio[3])


def test_audio_flac_can_not_hold_is_kept_as_float32(tmp_path):
    nine_rows = np.linspace(-1, 1, 9 * 16, dtype=np.float32).reshape(9, 1, 16)
    broken = np.array([[0.1, np.nan, 0.2]], np.float32)
    dataset = AudioSetDataset(str(tmp_path / "x.npz"))
    dataset.save(AudioSet(8000, {1: nine_rows, 2: broken}))
    loaded = dataset.load()
    np.testing.assert_array_equal(loaded.audio[1], nine_rows)
    np.testing.assert_array_equal(loaded.audio[2], broken)  # NaN kept for the error


def test_a_rerun_writes_the_same_bytes_minutes_later(tmp_path, monkeypatch):
    """Member dates are fixed, so identical audio saved later is hard-linked."""
    import time

    path = tmp_path / "mix.npz"
    first, second = "2026-01-01T00.00.00.000Z", "2026-01-02T00.00.00.000Z"
    AudioSetDataset(str(path), version=Version(None, first)).save(_audio_set(0.5))
    later = time.time() + 600
    monkeypatch.setattr(time, "time", lambda: later)
    monkeypatch.setattr(time, "localtime", lambda *_: time.gmtime(later))
    AudioSetDataset(str(path), version=Version(None, second)).save(_audio_set(0.5))
    assert (path / first / "mix.npz").stat().st_ino == (
        path / second / "mix.npz"
    ).stat().st_ino


def test_audio_folder_writes_flac(tmp_path):
    tone = np.sin(np.linspace(0, 300, 22050, dtype=np.float32))[None] * 0.5
    wav = AudioFolderDataset(str(tmp_path / "wav"))
    flac = AudioFolderDataset(str(tmp_path / "flac"), format="FLAC")
    for folder in (wav, flac):
        folder.save({"7/bass": (tone, 22050)})
    audio, rate = flac.load()["7/bass"]()
    wav_audio, _ = wav.load()["7/bass"]()
    # 16-bit both (libsndfile rounds float to int a little differently per format)
    np.testing.assert_allclose(audio, wav_audio, rtol=0, atol=1.01 / 32768)
    np.testing.assert_allclose(audio, tone, rtol=0, atol=1.01 / 32768)
    size = (tmp_path / "flac" / "7" / "bass.flac").stat().st_size
    assert size < (tmp_path / "wav" / "7" / "bass.wav").stat().st_size
    with pytest.raises(DatasetError, match="format"):
        AudioFolderDataset(str(tmp_path / "x"), format="MP3")
