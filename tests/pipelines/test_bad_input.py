"""A corpus of broken input, built in a temporary folder from the real samples.

Every case asserts exactly what happens to the track: kept (and flagged), or rejected
with its musicId and reason in ``rejected_tracks``; nothing is used silently.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from kedro.io import DataCatalog, DatasetError, MemoryDataset
from kedro.runner import SequentialRunner
from kedro_datasets.pandas import CSVDataset

from emomucs.datasets import AudioFolderDataset
from emomucs.pipelines import clipping, ingestion
from emomucs.rejections import BadTrackError

HEADER = (
    "musicId,fileName,title,artist,album,duration,chorus_start_time,chorus_end_time\n"
)
CLIP_SECONDS = 4.0


def _tone(seconds: float, rate: int, channels: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    mono = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.2 * np.sin(2 * np.pi * 3 * t))
    return np.repeat(mono[:, None], channels, axis=1).astype(np.float32)


def _id3_tag_only() -> bytes:
    """An ID3v2.4 tag (a title frame and padding) and nothing after it."""
    title = b"\x03" + b"No audio"
    frame = b"TIT2" + len(title).to_bytes(4, "big") + b"\x00\x00" + title
    body = frame + bytes(64)
    return b"ID3\x04\x00\x00" + len(body).to_bytes(4, "big") + body  # < 128: syncsafe


SURROUND_LEVELS = (0.1, 0.2, 0.3, 0.9, 0.4, 0.5)
"""Constant level of each 5.1 channel (L, R, C, LFE, Ls, Rs): a loud LFE."""


def _surround_51(seconds: float, rate: int) -> np.ndarray:
    return np.tile(np.float32(SURROUND_LEVELS), (int(seconds * rate), 1))


@pytest.fixture(scope="module")
def bad_corpus(tmp_path_factory, pmemo_samples) -> Path:
    """A PMEmo-layout folder where most tracks are broken in one specific way."""
    root = tmp_path_factory.mktemp("bad") / "PMEmo2019"
    chorus = root / "chorus"
    chorus.mkdir(parents=True)
    (root / "annotations").mkdir()
    real = pmemo_samples / "chorus" / "634.mp3"
    shutil.copy(real, chorus / "1.mp3")  # good: a real 45.1 s chorus
    sf.write(chorus / "2.wav", _tone(12, 22050, 2), 22050)  # good: 12 s stereo
    (chorus / "3.mp3").write_bytes(b"")  # 0-byte file
    data = real.read_bytes()
    (chorus / "4.mp3").write_bytes(data[: len(data) // 4])  # truncated mp3
    rng = np.random.default_rng(0)
    (chorus / "5.mp3").write_bytes(rng.integers(0, 256, 50_000, np.uint8).tobytes())
    sf.write(chorus / "6.wav", np.zeros((22050 * 10, 2), np.float32), 22050)  # silent
    sf.write(chorus / "7.wav", _tone(10, 8000, 1), 8000)  # mono 8 kHz
    sf.write(chorus / "8.wav", _tone(1, 22050, 2), 22050)  # 1 s chorus
    sf.write(chorus / "9.wav", _tone(10, 22050, 2), 22050)  # chorus time beyond song
    # 10: labelled, no audio file
    sf.write(chorus / "11.wav", _tone(10, 22050, 2), 22050)  # duplicate musicId
    sf.write(chorus / "12.wav", _tone(10, 22050, 2), 22050)  # NaN label
    sf.write(chorus / "13.wav", _tone(10, 22050, 2), 22050)  # label outside [0, 1]
    sf.write(root / "outside.wav", _tone(10, 22050, 2), 22050)  # reachable only via ../
    sf.write(root.parent / "abs.wav", _tone(10, 22050, 2), 22050)
    sf.write(chorus / "16.wav", _tone(10, 22050, 2), 22050)  # non-UTF-8 title
    sf.write(root.parent / "elsewhere.wav", _tone(10, 22050, 2), 22050)
    (chorus / "17.wav").symlink_to(root.parent / "elsewhere.wav")  # valid, outside
    (chorus / "18.mp3").symlink_to(root / "metadata.csv")  # outside chorus/
    (chorus / "19.mp3").write_bytes(_id3_tag_only())
    (chorus / "20.mp3").mkdir()  # a directory named like a chorus file
    sf.write(chorus / "21.wav", _tone(10, 22050, 2), 22050)  # label "high"
    sf.write(chorus / "22.wav", _tone(10, 22050, 2), 22050)  # conflicting labels
    (chorus / "23.wav").symlink_to("2.wav")  # a link that stays inside chorus/
    sf.write(chorus / "24.wav", _surround_51(10, 22050), 22050)  # 5.1
    metadata = (
        HEADER
        + "1,1.mp3,Real,A,B,45.1,01:41,02:24\n"
        + "2,2.wav,Good,A,B,12.0,00:10,00:22\n"
        + "3,3.mp3,Empty,A,B,45.1,00:00,00:45\n"
        + "4,4.mp3,Truncated,A,B,45.1,01:41,02:24\n"
        + "5,5.mp3,Noise bytes,A,B,45.1,01:41,02:24\n"
        + "6,6.wav,Silent,A,B,10.0,00:10,00:20\n"
        + "7,7.wav,Mono 8k,A,B,10.0,00:10,00:20\n"
        + "8,8.wav,One second,A,B,1.0,00:10,00:11\n"
        + "9,9.wav,Beyond,A,B,10.0,03:10,05:20\n"
        + "10,10.wav,Missing,A,B,10.0,00:10,00:20\n"
        + "11,11.wav,Dup one,A,B,10.0,00:10,00:20\n"
        + "11,11.wav,Dup two,A,B,10.0,00:10,00:20\n"
        + "12,12.wav,NaN label,A,B,10.0,00:10,00:20\n"
        + "13,13.wav,Out of range,A,B,10.0,00:10,00:20\n"
        + "14,../outside.wav,Escape,A,B,10.0,00:10,00:20\n"
        + f"15,{root.parent / 'abs.wav'},Absolute,A,B,10.0,00:10,00:20\n"
    ).encode() + "16,16.wav,Caf\xe9 latin-1,A,B,10.0,00:10,00:20\n".encode("latin-1")
    metadata += (
        "17,17.wav,Link out,A,B,10.0,00:10,00:20\n"
        + "18,18.mp3,Link to metadata,A,B,10.0,00:10,00:20\n"
        + "19,19.mp3,ID3 only,A,B,10.0,00:10,00:20\n"
        + "20,20.mp3,Directory,A,B,10.0,00:10,00:20\n"
        + "21,21.wav,Word label,A,B,10.0,00:10,00:20\n"
        + "22,22.wav,Conflicting labels,A,B,10.0,00:10,00:20\n"
        + "23,23.wav,Link inside,A,B,12.0,00:10,00:22\n"
        + "24,24.wav,Surround,A,B,10.0,00:10,00:20\n"
    ).encode()
    (root / "metadata.csv").write_bytes(metadata)
    labels = {i: (0.5, 0.5) for i in range(1, 25)}
    labels[12] = (0.4, float("nan"))
    labels[13] = (1.3, 0.2)
    labels[21] = ("high", 0.5)
    rows = [f"{i},{a},{v}" for i, (a, v) in labels.items()] + ["999,0.5,0.5"]
    rows += ["22,0.7,0.5"]  # a second row for 22, with another arousal
    (root / "annotations" / "static_annotations.csv").write_text(
        "musicId,Arousal(mean),Valence(mean)\n" + "\n".join(rows) + "\n"
    )
    return root


def _catalog(
    root: Path, on_bad_track: str = "skip", minimum: float = 0.1
) -> DataCatalog:
    return DataCatalog(
        {
            "pmemo_metadata": CSVDataset(
                filepath=str(root / "metadata.csv"),
                load_args={"encoding_errors": "replace"},
            ),
            "pmemo_static_annotations": CSVDataset(
                filepath=str(root / "annotations" / "static_annotations.csv")
            ),
            "pmemo_choruses": AudioFolderDataset(str(root / "chorus")),
            "params:ingestion": MemoryDataset(
                {"on_bad_track": on_bad_track, "chorus_span_tolerance_s": 5.0}
            ),
            "params:clipping": MemoryDataset(
                {
                    "clip_seconds": CLIP_SECONDS,
                    "seed": 1,
                    "sample_rate": 22050,
                    "channels": 2,
                    "min_chorus_s": 5.0,
                    "silence_dbfs": -60.0,
                    "duration_tolerance_s": 1.0,
                    "on_bad_track": on_bad_track,
                    "min_surviving_fraction": minimum,
                }
            ),
        }
    )


def _run(root: Path, **kwargs) -> DataCatalog:
    catalog = _catalog(root, **kwargs)
    SequentialRunner().run(
        ingestion.create_pipeline() + clipping.create_pipeline(), catalog
    )
    return catalog


@pytest.fixture(scope="module")
def outcome(bad_corpus):
    catalog = _run(bad_corpus)
    rejected = catalog.load("rejected_tracks")
    return catalog.load("track_table"), catalog.load("clips"), rejected


def _reasons(rejected: pd.DataFrame, music_id: int) -> list[str]:
    return rejected.loc[rejected["musicId"] == str(music_id), "reason"].tolist()


EXPECTED_REJECTIONS = {
    3: "empty file (0 bytes)",
    4: "audio lasts",  # truncated: decodes shorter than its metadata duration
    5: "cannot decode audio",
    6: "silent chorus",
    8: "under min_chorus_s",
    9: "chorus times outside the song",
    10: "audio file chorus/10.wav not found",
    11: "duplicate musicId",
    12: "valence is missing",
    13: "arousal 1.3 is outside [0, 1]",
    14: "points outside the dataset folder",
    15: "absolute path outside the dataset folder",
    17: "chorus/17.wav is a symbolic link to",
    18: "chorus/18.mp3 is a symbolic link to",
    19: "the file holds only an ID3 tag",
    20: "chorus/20.mp3 is a directory, not an audio file",
    21: "arousal 'high' is not a number",
    22: "2 static annotation rows that conflict (Arousal(mean) 0.5 vs 0.7)",
    999: "annotation row for a musicId absent from metadata.csv",
}


@pytest.mark.parametrize("music_id", sorted(EXPECTED_REJECTIONS))
def test_each_bad_track_is_rejected_with_its_reason(outcome, music_id):
    tracks, clips, rejected = outcome
    reasons = _reasons(rejected, music_id)
    assert reasons, f"track {music_id} was not rejected"
    assert any(EXPECTED_REJECTIONS[music_id] in reason for reason in reasons), reasons
    assert music_id not in set(tracks["musicId"]) and music_id not in clips.audio


def test_duplicate_musicid_rejects_every_copy(outcome):
    assert len(_reasons(outcome[2], 11)) == 2


def test_good_tracks_survive_and_conversions_are_flagged(outcome):
    tracks, clips, _ = outcome
    assert sorted(tracks["musicId"]) == [1, 2, 7, 16, 23, 24]
    by_id = tracks.set_index("musicId")
    assert by_id.loc[7, "source_sample_rate"] == 8000 and by_id.loc[7, "resampled"]
    assert by_id.loc[7, "source_channels"] == 1 and by_id.loc[7, "channels_changed"]
    assert not by_id.loc[2, "resampled"] and not by_id.loc[2, "channels_changed"]
    upmixed = clips.audio[7]
    assert upmixed.shape == (2, int(CLIP_SECONDS * 22050))
    np.testing.assert_array_equal(upmixed[0], upmixed[1])
    assert by_id.loc[1, "resampled"]  # 44.1 kHz mp3 to 22.05 kHz


def test_non_utf8_title_is_kept_with_a_warning(outcome, caplog, bad_corpus):
    tracks = outcome[0]
    assert "\ufffd" in tracks.set_index("musicId").loc[16, "title"]
    with caplog.at_level("WARNING"):
        _run(bad_corpus)
    assert any(
        "track 16: title is not valid UTF-8" in r.getMessage() for r in caplog.records
    )


def test_nothing_outside_the_dataset_root_is_read(bad_corpus, monkeypatch):
    import emomucs.datasets.audio_folder_dataset as folder_module

    opened = []
    real_load = folder_module.load_audio
    monkeypatch.setattr(
        folder_module, "load_audio", lambda path: opened.append(path) or real_load(path)
    )
    _run(bad_corpus)
    chorus = (bad_corpus / "chorus").resolve()
    assert opened and all(chorus in Path(p).resolve().parents for p in opened)


def test_fail_policy_stops_at_the_first_bad_track_naming_it(bad_corpus):
    with pytest.raises(Exception) as raised:
        _run(bad_corpus, on_bad_track="fail")
    chain = [raised.value, raised.value.__cause__, raised.value.__context__]
    assert any(
        isinstance(e, BadTrackError) for e in chain
    ) or "on_bad_track: fail" in str(raised.value)
    # track 9 is the first row with a problem visible in metadata.csv alone
    assert "track 9: chorus 03:10-05:20 spans 130.0 s" in str(raised.value)


def test_run_fails_when_too_few_tracks_survive(bad_corpus):
    with pytest.raises(Exception, match=r"only 6 of 25 tracks survived"):
        _run(bad_corpus, minimum=0.5)


def test_empty_metadata_file_is_a_clear_error(tmp_path):
    root = tmp_path / "PMEmo2019"
    (root / "annotations").mkdir(parents=True)
    (root / "metadata.csv").write_bytes(b"")
    (root / "annotations" / "static_annotations.csv").write_text(
        "musicId,Arousal(mean),Valence(mean)\n1,0.5,0.5\n"
    )
    with pytest.raises(DatasetError, match="metadata.csv"):
        _run(root)
    (root / "metadata.csv").write_text(HEADER)
    with pytest.raises(Exception, match="only 0 of 0 tracks survived"):
        _run(root)


def test_links_are_followed_only_inside_chorus(outcome, bad_corpus, monkeypatch):
    """A link out of chorus/ (to a valid wav, or to metadata.csv) is refused without
    being opened; one to another chorus file is read as that file."""
    import emomucs.datasets.audio_folder_dataset as folder_module

    tracks, clips, rejected = outcome
    for music_id in (17, 18):
        (reason,) = _reasons(rejected, music_id)
        assert "outside chorus/: refused" in reason, reason
    source, rate = sf.read(bad_corpus / "chorus" / "2.wav", dtype="float32")
    start = round(tracks.set_index("musicId").loc[23, "offset_s"] * rate)
    expected = source[start : start + int(CLIP_SECONDS * rate)].T
    np.testing.assert_array_equal(clips.audio[23], expected)  # 2.wav, read via 23
    opened = []
    real_load = folder_module.load_audio
    monkeypatch.setattr(
        folder_module, "load_audio", lambda path: opened.append(path) or real_load(path)
    )
    _run(bad_corpus)
    names = {Path(path).name for path in opened}
    assert "23.wav" in names and not names & {"17.wav", "18.mp3", "elsewhere.wav"}


def test_surround_is_downmixed_as_itu_bs775_with_a_warning(outcome, bad_corpus, caplog):
    from emomucs.pipelines.clipping.nodes import clip_choruses

    tracks, clips, _ = outcome
    assert tracks.set_index("musicId").loc[24, "source_channels"] == 6
    left, right, centre, _lfe, left_s, right_s = SURROUND_LEVELS
    norm = 1 + 2 * np.sqrt(0.5)
    expected = [
        (left + np.sqrt(0.5) * (centre + left_s)) / norm,
        (right + np.sqrt(0.5) * (centre + right_s)) / norm,
    ]
    # Any share of the loud LFE (0.9) would move both channels off these values.
    np.testing.assert_allclose(clips.audio[24].mean(axis=1), expected, atol=1e-3)
    assert abs(clips.audio[24][0] - clips.audio[24][1]).min() > 0.05  # not dual mono
    candidates = tracks[tracks["musicId"] == 24][["musicId", "fileName", "duration"]]
    options = _catalog(bad_corpus).load("params:clipping")
    choruses = AudioFolderDataset(str(bad_corpus / "chorus")).load()
    with caplog.at_level("WARNING"):
        clip_choruses(candidates, choruses, options)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("track 24: 6 audio channels" in m and "BS.775" in m for m in warnings)


def test_cv_folds_the_corpus_cannot_support_are_refused(pmemo_samples):
    """The four real samples are a 4-track corpus: the base 3 × 2 folds are refused
    where the folds are assigned, before any model trains, with the numbers."""
    from emomucs.errors import DatasetInputError
    from emomucs.pipelines.experiments.pipeline import create_folds_pipeline
    from tests.tiny_project import PROJECT, project_config

    catalog = _run(pmemo_samples)
    assert len(catalog.load("track_table")) == 4
    cv = project_config(PROJECT, "base")["parameters"]["cv"]
    catalog["params:cv"] = MemoryDataset(cv)
    with pytest.raises(DatasetInputError) as raised:
        SequentialRunner().run(create_folds_pipeline(), catalog)
    message = str(raised.value)
    assert (
        f"{cv['outer_folds']} outer × {cv['inner_folds']} inner folds over 4 tracks "
        "leave 1 training track(s) per inner split" in message
    )
    assert f"cv.min_train_tracks = {cv['min_train_tracks']}" in message
    assert "these folds need at least 9 tracks" in message


def test_local_separator_on_another_corpus_warns_once(pmemo_samples, tmp_path, caplog):
    from emomucs.audio import AudioSet, load_audio, resample
    from emomucs.pipelines.separation.nodes import separate_sources
    from tests.tiny_project import TINY_RATE, write_tiny_repo

    audio, rate = load_audio(pmemo_samples / "chorus" / "634.mp3")
    clip = resample(audio[:, :rate], rate, TINY_RATE)
    clips = AudioSet(TINY_RATE, {634: clip})
    write_tiny_repo(tmp_path / "repo")
    options = {
        "separator": {"kind": "local", "name": "tiny", "repo": str(tmp_path / "repo")},
        "output_sample_rate": TINY_RATE,
        "cache_dir": None,
        "progress": False,
    }
    empty = AudioSet(TINY_RATE, {})

    def warnings(corpus_root: str) -> list[str]:
        caplog.clear()
        with caplog.at_level("WARNING"):
            separate_sources(clips, empty, {**options, "corpus_root": corpus_root})
        return [r.getMessage() for r in caplog.records if "not meant" in r.getMessage()]

    (warning,) = warnings(str(pmemo_samples))
    assert str(pmemo_samples) in warning and "pretrained" in warning
    assert warnings("data/01_raw/synthetic/PMEmo2019") == []


def test_kedro_run_prints_a_dataset_error_without_traceback(pmemo_samples, tmp_path):
    """metadata.csv without chorus_end_time: `kedro run --pipeline=data` exits
    non-zero, and its error output is the message, not a traceback."""
    import subprocess
    import sys

    from tests.tiny_project import make_project, subprocess_env

    root = tmp_path / "PMEmo2019"
    shutil.copytree(pmemo_samples, root)
    metadata = pd.read_csv(root / "metadata.csv")
    (root / "metadata.csv").chmod(0o644)
    metadata.drop(columns="chorus_end_time").to_csv(root / "metadata.csv", index=False)
    project = make_project(tmp_path / "project", {})
    done = subprocess.run(
        [sys.executable, "-m", "kedro", "run", "--pipeline=data", "--env=tiny"]
        + [f"--params=dataset_root={root}"],
        cwd=project,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Error: metadata.csv lacks columns ['chorus_end_time']" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
