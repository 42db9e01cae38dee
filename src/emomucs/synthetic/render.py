"""Rendering a :class:`~emomucs.synthetic.design.TrackDesign` as four stems.

Every emotion cue lives in one stem and moves energy between mel bands or over time,
so 40 log-mel bands see it: drums are one-shot kick, snare and hi-hat samples on a
16-step grid whose busyness follows ``drum_density`` and whose snare and hats brighten
and ring longer with ``drum_brightness``; bass plays the roots of a chord progression
with a harmonic tilt set by ``bass_brightness``; "other" plays the chords on every 8th,
from short stabs to a held pad (``other_sustain``), with a tilt set by
``other_brightness``; vocals sing a melody around ``vocal_midi`` with glides, delayed
vibrato and vowel formants over a glottal source whose tilt follows
``vocal_brightness``.
Sources share the key, the chords and the beat, and overlap in frequency (kick and
bass, chords and voice, hi-hats and vowels), so separating them is possible but not
trivial. Every random choice comes from ``design.render_seed``.

The stems are returned on the 16-bit grid (multiples of 1/32768), so their sum, the
mix, is exact and survives a PCM-16 wav round trip unchanged.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from emomucs import SOURCES

from .design import PROGRESSIONS, TrackDesign

_SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
_TABLE_SIZE = 4096
_HIGHEST_PARTIAL_HZ = 9500.0  # keeps every partial below Nyquist at 22.05 kHz
_PCM_STEP = 1.0 / 32768.0
_PEAK = 0.98
_VOWEL_FORMANTS = {  # (frequency Hz, bandwidth Hz, gain) of F1-F3
    "a": ((800, 90, 1.0), (1200, 110, 0.6), (2800, 170, 0.25)),
    "e": ((450, 70, 1.0), (1900, 120, 0.5), (2600, 170, 0.3)),
    "i": ((300, 60, 1.0), (2300, 130, 0.45), (3000, 180, 0.3)),
    "o": ((500, 80, 1.0), (850, 90, 0.7), (2600, 170, 0.15)),
    "u": ((330, 60, 1.0), (750, 90, 0.4), (2400, 170, 0.1)),
}


def midi_to_hz(midi: np.ndarray | float) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(midi, dtype=float) - 69.0) / 12.0)


class _Grid:
    """The beat grid of one track: where bars and 16th steps fall, in samples."""

    def __init__(self, design: TrackDesign, sample_rate: int, phase: float) -> None:
        self.rate = sample_rate
        self.samples = round(design.duration_s * sample_rate)
        self.step_s = 60.0 / design.tempo_bpm / 4.0
        self.bar_s = 16 * self.step_s
        # the excerpt starts part-way into a bar, as a chorus cut from a song would
        self.offset_s = phase * self.bar_s
        self.bars = int(np.ceil((design.duration_s + self.offset_s) / self.bar_s)) + 1

    def sample_at(self, bar: int | np.ndarray, step: float | np.ndarray) -> np.ndarray:
        seconds = np.asarray(bar) * self.bar_s + np.asarray(step) * self.step_s
        return np.round((seconds - self.offset_s) * self.rate).astype(np.int64)


def _chord_tones(design: TrackDesign, bar: int) -> tuple[int, list[int]]:
    """Root pitch class and the three chord tones (semitones above C) of a bar."""
    scale = _SCALES[design.mode]
    degrees = PROGRESSIONS[design.mode][design.progression]
    degree = degrees[bar % len(degrees)]
    tones = [
        design.key + scale[(degree + 2 * j) % 7] + 12 * ((degree + 2 * j) // 7)
        for j in range(3)
    ]
    return tones[0] % 12, tones


def _wavetables(amplitudes: np.ndarray) -> np.ndarray:
    """One cycle of sum_k a_k sin(2 pi k x) per row of ``amplitudes`` (harmonic 1..K)."""
    amplitudes = np.atleast_2d(amplitudes)
    spectrum = np.zeros((amplitudes.shape[0], _TABLE_SIZE // 2 + 1), dtype=complex)
    spectrum[:, 1 : amplitudes.shape[1] + 1] = -0.5j * _TABLE_SIZE * amplitudes
    cycle = np.fft.irfft(spectrum, n=_TABLE_SIZE, axis=-1)
    # one wrapped sample at the end lets the oscillator interpolate without a modulo
    return np.concatenate([cycle, cycle[:, :1]], axis=1).astype(np.float32)


def _oscillate(
    tables: np.ndarray, f0_hz: np.ndarray, rate: int, which: np.ndarray | None = None
) -> np.ndarray:
    """Wavetable oscillator with continuous phase; ``which`` picks a table per sample."""
    cycles = np.cumsum(f0_hz / rate)  # float64: the phase must not drift over minutes
    fraction, whole = np.modf((cycles - np.floor(cycles)) * _TABLE_SIZE)
    fraction = fraction.astype(np.float32)
    # `& (size - 1)` wraps the rare position that rounds up to exactly one cycle
    index = whole.astype(np.int64) & (_TABLE_SIZE - 1)
    if which is not None:
        index += which * (_TABLE_SIZE + 1)
    flat = tables.ravel()
    here = flat[index]
    after = flat[index + 1]  # every table ends with a copy of its first sample
    return here + fraction * (after - here)


def _held(samples: int, starts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per sample, ``values[i]`` from ``starts[i]`` (sorted) until the next start.

    Samples before the first start take the first value, so a glide or a pitch track
    never begins from nothing.
    """
    bounds = np.clip(np.append(starts, samples), 0, samples)
    bounds[0] = 0
    return np.repeat(np.asarray(values, dtype=float), np.diff(bounds))


def _envelope(
    samples: int,
    starts: np.ndarray,
    ends: np.ndarray,
    rate: int,
    attack_s: float,
    release_s: float,
    decay_s: float | None = None,
    sustain: float = 1.0,
    levels: np.ndarray | None = None,
) -> np.ndarray:
    """Attack-decay-sustain-release gates of notes, overlapping notes take the max."""
    out = np.zeros(samples, dtype=np.float32)
    levels = np.ones(len(starts)) if levels is None else levels
    release = max(1, round(release_s * rate))
    for start, end, level in zip(starts, ends, levels, strict=True):
        length = end - start
        if length <= 0 or end + release <= 0 or start >= samples:
            continue
        t = np.arange(length + release) / rate
        attack = min(attack_s, 0.5 * length / rate)
        shape = np.minimum(t / attack, 1.0) if attack > 0 else np.ones_like(t)
        if decay_s is not None:
            shape *= sustain + (1.0 - sustain) * np.exp(
                -np.maximum(t - attack, 0) / decay_s
            )
        held = shape[length - 1]
        shape[length:] = held * np.linspace(1.0, 0.0, release, endpoint=False)
        lo, hi = max(start, 0), min(end + release, samples)
        piece = (level * shape[lo - start : hi - start]).astype(np.float32)
        np.maximum(out[lo:hi], piece, out=out[lo:hi])
    return out


def _place(
    out: np.ndarray, positions: np.ndarray, sound: np.ndarray, gains: np.ndarray
) -> None:
    """Add ``gain * sound`` at each position (in samples) of ``out``, cut at its ends."""
    for position, gain in zip(positions, gains, strict=True):
        lo, hi = max(position, 0), min(position + sound.shape[-1], out.shape[-1])
        if lo < hi:
            out[..., lo:hi] += gain * sound[..., lo - position : hi - position]


def _chosen(
    rng: np.random.Generator, steps: tuple[int, ...], share: float
) -> list[tuple[int, float]]:
    """``share * len(steps)`` of ``steps`` as ``(step, weight)``: which ones is drawn
    at random, the count is not.

    Whole hits weigh 1 and the fractional remainder is one softer hit, so the drums'
    energy grows smoothly with the cue instead of in steps of one hit (a coin per
    step, or a rounded count, would blur the cue the labels are made of).
    """
    count = float(np.clip(share, 0.0, 1.0)) * len(steps)
    order = rng.permutation(steps)
    whole = int(count)
    chosen = [(int(step), 1.0) for step in order[:whole]]
    if whole < len(steps) and count > whole:
        chosen.append((int(order[whole]), count - whole))
    return sorted(chosen)


def _drum_pattern(
    rng: np.random.Generator, density: float
) -> dict[str, list[tuple[int, float]]]:
    """One bar of (step, velocity) per drum; density adds kicks, ghost notes, 16ths."""
    kick = [(0, 1.0), (8, 0.95)]
    kick += [(step, 0.8 * w) for step, w in _chosen(rng, (10, 6, 14, 3, 11), density)]
    snare = [(4, 1.0), (12, 1.0)]
    snare += [(step, 0.35 * w) for step, w in _chosen(rng, (7, 9, 15, 13), density)]
    hats = [(step, 0.9) for step in (0, 4, 8, 12)]
    hats += [(step, 0.6 * w) for step, w in _chosen(rng, (2, 6, 10, 14), 2 * density)]
    odd = tuple(range(1, 16, 2))
    hats += [(step, 0.45 * w) for step, w in _chosen(rng, odd, 2 * density - 1)]
    return {"kick": kick, "snare": snare, "hat": hats}


def _drum_sounds(
    rng: np.random.Generator, brightness: float, rate: int
) -> dict[str, np.ndarray]:
    """Kick, snare and hi-hat one-shots; brightness tilts the snare and hats towards
    high frequencies and lets the hats ring longer."""
    t = np.arange(round(0.45 * rate)) / rate
    sweep = rng.uniform(45, 60) + rng.uniform(80, 130) * np.exp(-t / 0.03)
    kick = np.sin(2 * np.pi * np.cumsum(sweep) / rate) * np.exp(
        -t / rng.uniform(0.15, 0.2)
    )
    click = rng.standard_normal(t.size) * np.exp(-t / 0.002)
    kick += 0.4 * click
    noise = rng.standard_normal(t.size)
    bright = np.diff(noise, prepend=0.0)
    dark = lfilter([0.15], [1, -0.85], noise)
    snare_noise = (1 - brightness) * dark + brightness * bright
    snare = 0.6 * np.sin(2 * np.pi * rng.uniform(170, 230) * t) * np.exp(-t / 0.06)
    snare += snare_noise * np.exp(-t / (0.06 + 0.12 * brightness))
    hiss = np.diff(rng.standard_normal(t.size + 2), n=2)
    hat = ((1 - brightness) * lfilter([0.3], [1, -0.7], hiss) + brightness * hiss) * (
        np.exp(-t / (0.015 + 0.09 * brightness))
    )
    return {
        name: (sound / np.max(np.abs(sound))).astype(np.float32)
        for name, sound in {"kick": kick, "snare": snare, "hat": hat}.items()
    }


def _drums(design: TrackDesign, grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    pattern = _drum_pattern(rng, design.drum_density)
    sounds = _drum_sounds(rng, design.drum_brightness, grid.rate)
    jitter = 0.004 * grid.rate  # humanised timing (sd, samples)
    out = np.zeros(grid.samples, dtype=np.float32)
    for name, hits in pattern.items():
        steps = np.array([step for step, _ in hits], dtype=float)
        velocity = np.array([v for _, v in hits])
        bars = np.arange(grid.bars)
        positions = grid.sample_at(bars[:, None], steps[None, :]).ravel()
        positions += np.round(rng.normal(0, jitter, positions.size)).astype(int)
        velocities = np.tile(velocity, grid.bars) * rng.uniform(
            0.85, 1.0, positions.size
        )
        _place(out, positions, sounds[name], velocities)
    return out


def _bass(design: TrackDesign, grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    """Roots (with an occasional fifth or octave) on 8ths; ``bass_brightness`` sets
    how slowly its harmonics fall (round to buzzing)."""
    rhythm = ((0, 2), (2, 2), (4, 2), (6, 2))
    starts, ends, pitches = [], [], []
    for bar in range(grid.bars):
        root, _ = _chord_tones(design, bar)
        for position, (eighth, length) in enumerate(rhythm):
            interval = 0
            if position % 2 and rng.random() < 0.3:
                interval = int(rng.choice([7, 12]))
            starts.append(grid.sample_at(bar, 2 * eighth))
            ends.append(grid.sample_at(bar, 2 * (eighth + length) - 0.3))
            pitches.append(36 + root + interval)
    starts, ends = np.array(starts), np.array(ends)
    f0 = _held(grid.samples, starts, midi_to_hz(np.array(pitches, dtype=float)))
    partials = np.arange(1, int(_HIGHEST_PARTIAL_HZ / midi_to_hz(60)))
    rolloff = 2.6 - 1.8 * design.bass_brightness
    table = _wavetables(partials**-rolloff)
    envelope = _envelope(
        grid.samples, starts, ends, grid.rate, 0.005, 0.03, decay_s=0.25, sustain=0.6
    )
    return _oscillate(table, f0, grid.rate) * envelope


def _other(
    design: TrackDesign, grid: _Grid, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Chords on every 8th, from stabs to a held pad (``other_sustain``), with
    ``other_brightness`` setting their harmonic tilt; two detuned layers (for stereo
    width)."""
    bar_starts = grid.sample_at(np.arange(grid.bars), 0)
    chords = [tuple(_chord_tones(design, bar)[1]) for bar in range(grid.bars)]
    voicings = {
        chord: midi_to_hz(sorted(55 + (tone - 55) % 12 for tone in chord))
        for chord in chords
    }
    rolloff = 2.6 - 1.8 * design.other_brightness
    highest = max(hz.max() for hz in voicings.values())
    count = int(_HIGHEST_PARTIAL_HZ / (highest * 1.01))
    table = _wavetables(np.arange(1, count + 1, dtype=float) ** -rolloff)
    bar = int(np.ceil(grid.bar_s * grid.rate)) + round(0.1 * grid.rate)  # + release
    # chords on every 8th, held for a share of it that grows with the sustain cue:
    # short stabs at 0, one continuous pad at 1
    steps = np.arange(0, 16, 2)
    starts = np.round(steps * grid.step_s * grid.rate).astype(np.int64)
    held = (0.12 + 0.88 * design.other_sustain) * 2 * grid.step_s
    ends = starts + round(held * grid.rate)
    envelope = _envelope(bar, starts, ends, grid.rate, 0.01, 0.04)
    # the envelope closes before each bar line, so one rendered bar per chord, reused
    # wherever the progression repeats, sounds the same as one continuous oscillator
    detune = 2.0 ** (rng.uniform(4, 10) / 1200.0)
    sounds = {}
    for chord, hz in voicings.items():
        layers = np.zeros((2, bar), dtype=np.float32)
        for layer, factor in enumerate((1.0 / detune, detune)):
            for f0 in hz:
                layers[layer] += _oscillate(table, np.full(bar, f0 * factor), grid.rate)
        sounds[chord] = layers * envelope
    out = np.zeros((2, grid.samples), dtype=np.float32)
    for start, chord in zip(bar_starts, chords, strict=True):
        _place(out, np.array([start]), sounds[chord], np.ones(1))
    return out[0], out[1]


def _vocal_tables(
    f0_hz: np.ndarray, vowels: list[str], brightness: float
) -> np.ndarray:
    """Harmonic amplitudes of a glottal source through each note's vowel formants.

    The source falls as ``1/k**tilt``: from 2.2 (dark, soft) down to 0.6 (bright,
    pressed) as ``brightness`` goes from 0 to 1.
    """
    tilt = 2.2 - 1.6 * brightness
    count = int(_HIGHEST_PARTIAL_HZ / (f0_hz.max() * 1.06))
    partials = np.arange(1, count + 1)
    amplitudes = np.empty((f0_hz.size, count))
    for row, (f0, vowel) in enumerate(zip(f0_hz, vowels, strict=True)):
        frequency = partials * f0
        shape = 0.02 + sum(
            gain / (1.0 + ((frequency - centre) / width) ** 2)
            for centre, width, gain in _VOWEL_FORMANTS[vowel]
        )
        amplitudes[row] = shape / partials**tilt
    return _wavetables(amplitudes)


def _melody(
    design: TrackDesign, grid: _Grid, rng: np.random.Generator
) -> tuple[list[int], list[int], list[int]]:
    """Phrases of two bars on an 8th grid: a random walk over scale and chord tones."""
    scale = _SCALES[design.mode]
    centre = design.vocal_midi
    candidates = np.array(
        [
            m
            for m in range(int(centre) - 8, int(centre) + 9)
            if (m - design.key) % 12 in scale
        ]
    )
    pitch = candidates[np.argmin(np.abs(candidates - centre))]
    starts, ends, pitches = [], [], []
    for bar in range(grid.bars):
        _, tones = _chord_tones(design, bar)
        chordal = np.isin(candidates % 12, [t % 12 for t in tones])
        eighth = 0
        last = 6 if bar % 2 else 8  # breathe at the end of each phrase
        while eighth < last:
            length = int(rng.choice([1, 2, 2, 3, 4]))
            if rng.random() < 0.12:  # a rest
                eighth += length
                continue
            weight = np.exp(-np.abs(candidates - pitch) / 2.5)
            weight *= np.exp(-0.5 * ((candidates - centre) / 3.0) ** 2)
            weight *= np.where(chordal, 2.5, 1.0)
            pitch = int(rng.choice(candidates, p=weight / weight.sum()))
            end = min(eighth + length, last)
            starts.append(int(grid.sample_at(bar, 2 * eighth)))
            # a gap longer than the release, so the vowel table switches in silence
            ends.append(int(grid.sample_at(bar, 2 * end - 0.5)))
            pitches.append(pitch)
            eighth = end
    return starts, ends, pitches


def _vocals(design: TrackDesign, grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    starts, ends, pitches = _melody(design, grid, rng)
    if not starts:
        return np.zeros(grid.samples, dtype=np.float32)
    starts, ends = np.array(starts), np.array(ends)
    target = _held(grid.samples, starts, np.array(pitches, dtype=float))
    glide = np.exp(-1.0 / (rng.uniform(0.02, 0.05) * grid.rate))
    semitones = lfilter([1 - glide], [1, -glide], target, zi=[glide * target[0]])[0]
    onset = _held(grid.samples, starts, starts.astype(float))
    since = (np.arange(grid.samples) - onset) / grid.rate
    depth = rng.uniform(0.2, 0.45) * np.clip((since - 0.15) / 0.25, 0.0, 1.0)
    vibrato = depth * np.sin(2 * np.pi * rng.uniform(5.0, 6.5) * since)
    f0 = midi_to_hz(semitones + vibrato)
    note = _held(grid.samples, starts, np.arange(len(starts), dtype=float)).astype(int)
    # the vowels take turns (from a random one): every clip sings each about as
    # often, so the formants, which carry no label, move its band statistics little
    names = list(_VOWEL_FORMANTS)
    first = int(rng.integers(len(names)))
    vowels = [names[(first + note) % len(names)] for note in range(len(starts))]
    tables = _vocal_tables(
        midi_to_hz(np.array(pitches)), vowels, design.vocal_brightness
    )
    envelope = _envelope(
        grid.samples,
        starts,
        ends,
        grid.rate,
        0.03,
        0.03,
        levels=rng.uniform(0.8, 1.0, len(starts)),
    )
    voice = _oscillate(tables, f0, grid.rate, which=note)
    breath = np.diff(rng.standard_normal(grid.samples + 1)).astype(np.float32)
    # the air in the voice grows with its brightness, as the harmonics do
    air = np.float32(0.03 * (0.2 + 0.8 * design.vocal_brightness))
    return (voice + air * breath) * envelope


def _rms(signal: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(signal, dtype=np.float64)))) or 1.0


def _pan(signal: np.ndarray, position: float) -> np.ndarray:
    """Constant-power pan, position -1 (left) .. 1 (right)."""
    angle = (position + 1.0) * np.pi / 4.0
    return np.stack(
        [np.float32(np.cos(angle)) * signal, np.float32(np.sin(angle)) * signal]
    )


def render_track(
    design: TrackDesign, sample_rate: int = 22050, channels: int = 2
) -> np.ndarray:
    """The four stems of a design, ``(sources, channels, samples)`` float32.

    Sources follow :data:`emomucs.SOURCES`. One gain common to all stems keeps the mix
    and every stem below 0.98 full scale, and the stems are rounded to the 16-bit grid,
    so ``stems.sum(axis=0)`` is the exact mix. Each stem draws its random choices
    from its own stream of ``design.render_seed``, so a cue changes its own stem
    only (up to that common gain).

    Raises:
        ValueError: ``channels`` is not 1 or 2, or the design is too short to render.
    """
    if channels not in (1, 2):
        raise ValueError(
            f"track {design.music_id}: channels must be 1 or 2, got {channels}"
        )
    streams = np.random.SeedSequence(design.render_seed).spawn(1 + len(SOURCES))
    rng, *stem_rngs = (np.random.default_rng(stream) for stream in streams)
    stem_rng = dict(zip(SOURCES, stem_rngs, strict=True))
    grid = _Grid(design, sample_rate, phase=rng.random())
    if grid.samples < 1:
        raise ValueError(
            f"track {design.music_id}: duration {design.duration_s} s is empty"
        )
    other_a, other_b = _other(design, grid, stem_rng["other"])
    mono = {
        "drums": _drums(design, grid, stem_rng["drums"]),
        "bass": _bass(design, grid, stem_rng["bass"]),
        "other": other_a + other_b,
        "vocals": _vocals(design, grid, stem_rng["vocals"]),
    }
    # RMS levels in dBFS, a little different per track; no cue lives in a level
    levels = {
        "drums": -23.0 + rng.uniform(-1.5, 1.5),
        "bass": -23.0 + rng.uniform(-1.5, 1.5),
        "other": -25.0 + rng.uniform(-1.5, 1.5),
        "vocals": -20.0 + rng.uniform(-1.5, 1.5),
    }
    gains = {name: 10 ** (levels[name] / 20) / _rms(mono[name]) for name in mono}
    mono = {name: (signal * np.float32(gains[name])) for name, signal in mono.items()}
    if channels == 1:
        stems = np.stack([mono[name] for name in SOURCES])[:, None, :]
    else:
        positions = {
            "drums": rng.uniform(-0.15, 0.15),
            "bass": rng.uniform(-0.1, 0.1),
            "other": rng.uniform(-0.5, 0.5),
            "vocals": rng.uniform(-0.3, 0.3),
        }
        width = rng.uniform(0.2, 0.5)
        stereo = {
            name: _pan(mono[name], positions[name])
            for name in ("drums", "bass", "vocals")
        }
        other_gain = np.float32(gains["other"])
        stereo["other"] = other_gain * (
            _pan(other_a, positions["other"] - width)
            + _pan(other_b, positions["other"] + width)
        )
        stems = np.stack([stereo[name] for name in SOURCES])
    peak = max(np.abs(stems.sum(axis=0)).max(), np.abs(stems).max())
    # float32 rounding to multiples of 2**-15 is exact for |x| < 1
    stems *= np.float32(min(1.0, _PEAK / peak) / _PCM_STEP)
    np.round(stems, out=stems)
    stems *= np.float32(_PCM_STEP)
    return stems
