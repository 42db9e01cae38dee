"""The synthetic generator: audio format, exact mixes, seeding, label design, ceiling."""

from __future__ import annotations

import io
from dataclasses import replace

import librosa
import numpy as np
import pytest
import soundfile as sf

from emomucs import SOURCES
from emomucs.pipelines.features.nodes import log_mel
from emomucs.synthetic import (
    AROUSAL_WEIGHTS,
    CUE_SOURCES,
    VALENCE_WEIGHTS,
    TrackDesign,
    add_label_noise,
    arousal_of,
    chorus_durations,
    design_corpus,
    design_multitrack,
    label_ceiling,
    noiseless_labels,
    render_track,
    sample_pmemo_targets,
    source_contributions,
    valence_of,
)

RATE = 22050

BASE = TrackDesign(
    music_id=1001,
    drum_density=0.5,
    drum_brightness=0.5,
    bass_brightness=0.5,
    vocal_midi=62.0,
    vocal_brightness=0.5,
    other_brightness=0.5,
    other_sustain=0.5,
    tempo_bpm=120.0,
    major=1,
    key=0,
    progression=0,
    duration_s=3.0,
    chorus_start_s=60,
    render_seed=11,
)


def _pcm16_round_trip(audio: np.ndarray) -> np.ndarray:
    buffer = io.BytesIO()
    sf.write(buffer, audio.T, RATE, subtype="PCM_16", format="WAV")
    buffer.seek(0)
    data, _ = sf.read(buffer, dtype="int16", always_2d=True)
    return data.T.astype(np.int32)


def test_stems_have_the_expected_shape_and_are_all_audible():
    stems = render_track(BASE, RATE, channels=2)
    assert stems.shape == (4, 2, 3 * RATE)
    assert stems.dtype == np.float32
    rms_db = 20 * np.log10(np.sqrt(np.mean(stems**2, axis=(1, 2))))
    assert (rms_db > -45).all(), rms_db
    assert np.abs(stems).max() <= 0.98
    assert np.abs(stems.sum(axis=0)).max() <= 0.98
    # stereo: panning makes left and right differ
    assert not np.allclose(stems[:, 0], stems[:, 1])
    assert render_track(BASE, RATE, channels=1).shape == (4, 1, 3 * RATE)


def test_stems_sum_exactly_to_the_mix_after_pcm16():
    stems = render_track(replace(BASE, drum_brightness=1.0, drum_density=1.0), RATE)
    mix = stems.sum(axis=0)
    written = sum(_pcm16_round_trip(stem) for stem in stems)
    np.testing.assert_array_equal(written, _pcm16_round_trip(mix))
    np.testing.assert_array_equal(_pcm16_round_trip(mix) / 32768.0, mix)


def test_same_seed_same_corpus_other_seed_other_corpus():
    first, labels = design_corpus(
        6, seed=3, chorus_range_s=(2.0, 3.0), short_below_s=2.5
    )
    again, labels_again = design_corpus(
        6, seed=3, chorus_range_s=(2.0, 3.0), short_below_s=2.5
    )
    other, labels_other = design_corpus(
        6, seed=4, chorus_range_s=(2.0, 3.0), short_below_s=2.5
    )
    assert first == again
    np.testing.assert_array_equal(labels, labels_again)
    assert first != other
    assert not np.array_equal(labels, labels_other)
    np.testing.assert_array_equal(render_track(first[0]), render_track(again[0]))
    assert not np.array_equal(
        render_track(first[0]), render_track(replace(first[0], render_seed=1))
    )
    assert [d.music_id for d in first] == list(range(1001, 1007))


def test_label_functions_respond_to_their_cues_as_designed():
    cues = BASE.cues()
    for weights, label_of in (
        (AROUSAL_WEIGHTS, arousal_of),
        (VALENCE_WEIGHTS, valence_of),
    ):
        assert sum(weights.values()) == pytest.approx(1.0)
        for name, weight in weights.items():
            moved = label_of({**cues, name: 0.9}) - label_of({**cues, name: 0.1})
            assert moved == pytest.approx(0.8 * weight)
    # arousal ignores the valence cues and the other way round
    dark = replace(BASE, vocal_midi=50.0, other_brightness=0.0, other_sustain=0.0)
    assert noiseless_labels(dark)[0] == pytest.approx(noiseless_labels(BASE)[0])
    busy = replace(BASE, drum_density=1.0, bass_brightness=1.0)
    assert noiseless_labels(busy)[1] == pytest.approx(noiseless_labels(BASE)[1])
    # every cue lives in one stem: arousal in drums and bass, valence in vocals and other
    assert {CUE_SOURCES[n] for n in AROUSAL_WEIGHTS} == {"drums", "bass"}
    assert {CUE_SOURCES[n] for n in VALENCE_WEIGHTS} == {"vocals", "other"}
    lowest = replace(BASE, **{n: 0.0 for n in AROUSAL_WEIGHTS})
    highest = replace(BASE, **{n: 1.0 for n in AROUSAL_WEIGHTS})
    assert noiseless_labels(lowest)[0] == 0.0 and noiseless_labels(highest)[0] == 1.0


def test_annotations_of_a_corpus_follow_the_cues():
    designs, labels = design_corpus(400, seed=5)
    for name in AROUSAL_WEIGHTS:
        cue = np.array([d.cues()[name] for d in designs])
        assert np.corrcoef(cue, labels[:, 0])[0, 1] > 0.5, name
    for name in VALENCE_WEIGHTS:
        cue = np.array([d.cues()[name] for d in designs])
        assert np.corrcoef(cue, labels[:, 1])[0, 1] > 0.5, name
    # the nuisances carry no label
    tempo = np.array([d.tempo_bpm for d in designs])
    major = np.array([d.major for d in designs])
    assert abs(np.corrcoef(tempo, labels[:, 0])[0, 1]) < 0.15
    assert abs(np.corrcoef(major, labels[:, 1])[0, 1]) < 0.15
    # the annotations scatter around the label function by the noise sd
    truth = np.array([noiseless_labels(d) for d in designs])
    assert np.std(labels - truth, axis=0) == pytest.approx([0.1, 0.1], abs=0.015)


def test_contributions_split_each_dimension_over_the_sources_carrying_its_cues():
    designs, _ = design_corpus(300, seed=6)
    shares = source_contributions(designs)
    for dimension, weights in (
        ("arousal", AROUSAL_WEIGHTS),
        ("valence", VALENCE_WEIGHTS),
    ):
        assert set(shares[dimension]) == set(SOURCES)
        assert sum(shares[dimension].values()) == pytest.approx(1.0)
        carriers = {CUE_SOURCES[name] for name in weights}
        for source, share in shares[dimension].items():
            assert share >= 0.0
            assert (share > 0.1) if source in carriers else (share == 0.0), source
        # cues of one dimension move together, so each source's share of the
        # variance is close to its share of the weights
        for source in carriers:
            weight = sum(w for n, w in weights.items() if CUE_SOURCES[n] == source)
            assert shares[dimension][source] == pytest.approx(weight, abs=0.1)


def _band_means(stems: np.ndarray) -> np.ndarray:
    """Per-source log-mel band means (dB re each stem's max), the reference's view."""
    return log_mel(stems.mean(axis=1), RATE, 40, 1024, 512, 80.0).mean(axis=-1)


@pytest.mark.parametrize("cue", sorted(CUE_SOURCES))
def test_each_cue_moves_its_own_stem_in_the_log_mel_and_no_other(cue):
    low, high = ({cue: value} for value in (0.1, 0.9))
    if cue == "vocal_register":
        low, high = {"vocal_midi": 52.0}, {"vocal_midi": 72.0}
    design = replace(BASE, duration_s=4.0)
    before = _band_means(render_track(replace(design, **low), RATE))
    after = _band_means(render_track(replace(design, **high), RATE))
    moved = np.abs(after - before).mean(axis=-1)
    own = SOURCES.index(CUE_SOURCES[cue])
    # the stem that carries the cue moves by decibels, the others only by the
    # rounding of a common gain to the 16-bit grid
    assert moved[own] > 1.5, moved
    assert np.delete(moved, own).max() < 0.05, moved


def test_rendered_audio_carries_the_cues():
    def onsets_per_second(design: TrackDesign) -> float:
        drums = render_track(design, RATE, channels=1)[0, 0]
        onsets = librosa.onset.onset_detect(
            y=drums, sr=RATE, hop_length=256, units="time"
        )
        return len(onsets) / design.duration_s

    sparse = replace(BASE, drum_density=0.0, duration_s=6.0)
    busy = replace(BASE, drum_density=1.0, duration_s=6.0)
    # 16th hi-hats, extra kicks and ghost snares against quarter notes
    assert onsets_per_second(busy) > 2 * onsets_per_second(sparse)

    def vocal_pitch(design: TrackDesign) -> float:
        vocals = render_track(design, RATE, channels=1)[3, 0]
        f0 = librosa.yin(vocals, fmin=80, fmax=1200, sr=RATE)
        loud = librosa.feature.rms(y=vocals)[0][: f0.size] > 0.01
        return float(np.median(librosa.hz_to_midi(f0[loud])))

    assert vocal_pitch(replace(BASE, vocal_midi=72)) - vocal_pitch(
        replace(BASE, vocal_midi=52)
    ) == pytest.approx(20, abs=4)

    def centroid(design: TrackDesign, source: str) -> float:
        stem = render_track(design, RATE, channels=1)[SOURCES.index(source), 0]
        return float(np.mean(librosa.feature.spectral_centroid(y=stem, sr=RATE)))

    for cue, source in CUE_SOURCES.items():
        if cue.endswith("brightness"):
            bright = centroid(replace(BASE, **{cue: 1.0}), source)
            assert bright > 1.3 * centroid(replace(BASE, **{cue: 0.0}), source), cue

    def sounding_share(design: TrackDesign) -> float:
        other = render_track(design, RATE, channels=1)[2, 0]
        rms = librosa.feature.rms(y=other)[0]
        return float(np.mean(rms > 0.1 * rms.max()))

    # stabs leave gaps between the chords that held chords fill
    held, stabs = (replace(BASE, other_sustain=v) for v in (1.0, 0.0))
    assert sounding_share(held) > sounding_share(stabs) + 0.4


def test_targets_follow_the_pmemo_label_distribution():
    targets = sample_pmemo_targets(np.random.default_rng(0), 5000)
    # PMEmo2019 static labels: mean 0.622 / 0.597, sd 0.185 / 0.162, r 0.71
    assert targets.mean(axis=0) == pytest.approx([0.622, 0.597], abs=0.02)
    assert targets.std(axis=0) == pytest.approx([0.185, 0.162], abs=0.02)
    assert np.corrcoef(targets.T)[0, 1] == pytest.approx(0.71, abs=0.05)
    assert ((targets >= 0) & (targets <= 1)).all()


def test_chorus_durations_have_exactly_the_requested_short_share():
    lengths = chorus_durations(np.random.default_rng(1), 128, 14.0, 30.0, 20.0, 0.15)
    assert (lengths < 20.0).sum() == round(0.15 * 128)
    assert lengths.min() >= 14.0 and lengths.max() <= 30.0
    np.testing.assert_array_equal(lengths, np.round(lengths, 1))
    with pytest.raises(ValueError, match="shortest < short_below <= longest"):
        chorus_durations(np.random.default_rng(1), 4, 20.0, 30.0, 14.0, 0.15)


@pytest.mark.parametrize("noise_sd", [0.05, 0.1, 0.2])
def test_ceiling_is_consistent_with_the_noise(noise_sd):
    designs, labels = design_corpus(1500, seed=9, noise_sd=noise_sd)
    truth = np.array([noiseless_labels(d) for d in designs])
    for dimension in (0, 1):
        ceiling = label_ceiling(truth[:, dimension], labels[:, dimension], noise_sd)
        assert ceiling["nominal_noise_var"] == pytest.approx(4 * noise_sd**2)
        # clipping at 0 and 1 can only shrink the noise
        assert ceiling["noise_var"] <= ceiling["nominal_noise_var"]
        assert ceiling["r2_empirical"] == pytest.approx(
            ceiling["r2_theoretical"], abs=0.04
        )
        assert ceiling["label_var"] == pytest.approx(
            ceiling["expected_label_var"], rel=0.1
        )
        assert ceiling["r2_noiseless"] <= ceiling["r2_empirical"] + 1e-3
        # the residual of the best predictions is the noise, as designed
        assert ceiling["label_var"] * (1 - ceiling["r2_empirical"]) == pytest.approx(
            ceiling["noise_var"], rel=0.1
        )


def test_ceiling_falls_as_the_noise_grows():
    designs, _ = design_corpus(800, seed=2)
    truth = np.array([noiseless_labels(d) for d in designs])[:, 0]
    rng = np.random.default_rng(0)
    r2 = [
        label_ceiling(truth, add_label_noise(truth, sd, rng), sd)["r2_empirical"]
        for sd in (0.0, 0.05, 0.1, 0.2)
    ]
    assert r2[0] > 0.999
    assert r2 == sorted(r2, reverse=True)


def test_multitrack_designs_are_unlabelled_songs_of_one_length():
    designs = design_multitrack(5, seed=4242, duration_s=12.0)
    assert [d.music_id for d in designs] == list(range(5))
    assert {d.duration_s for d in designs} == {12.0}
    assert design_multitrack(5, seed=4242, duration_s=12.0) == designs


def test_render_rejects_bad_channel_counts_naming_the_track():
    with pytest.raises(ValueError, match="track 1001: channels must be 1 or 2"):
        render_track(BASE, RATE, channels=6)
