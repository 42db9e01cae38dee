"""Designing a synthetic corpus: emotion targets, musical cues and their labels.

The label of a track is a known function of its cues (:func:`arousal_of`,
:func:`valence_of`) plus Gaussian noise of a known sd, so the best R² any model can reach
is known (:func:`label_ceiling`). Every cue lives in one stem (:data:`CUE_SOURCES`) and
shifts energy between mel bands or over time, so the paper's 40-band log-mel sees it:

* arousal by the drums (density: hits per bar; brightness: tilt and ring of snare and
  hats) and the bass (brightness: the tilt of its harmonics);
* valence by the vocals (register; brightness: the tilt of the glottal source) and
  "other" (brightness: the tilt of the chords; sustain: stabs to held chords).

Each source's true share of each dimension follows from the construction
(:func:`source_contributions`). Tempo, mode, key and progression are nuisances drawn
independently of the labels. Targets are drawn from a Gaussian copula fitted to PMEmo's
767 static labels, and the cues are derived from them so that the noiseless labels
follow PMEmo's joint distribution (marginals and the arousal/valence correlation)
except where a cue reaches the end of its range.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.special import ndtr

from emomucs import SOURCES

# PMEmo2019 static labels (767 songs): 5 % quantiles of each dimension and the
# correlation of their normal scores (rank -> probit), on PMEmo's [0, 1] scale.
_QUANTILE_LEVELS = np.linspace(0.0, 1.0, 21)
_AROUSAL_QUANTILES = np.array(
    [0.087, 0.279, 0.35, 0.4, 0.45, 0.5, 0.525, 0.562, 0.588, 0.625, 0.65]
    + [0.675, 0.7, 0.713, 0.738, 0.762, 0.799, 0.825, 0.85, 0.875, 0.975]
)
_VALENCE_QUANTILES = np.array(
    [0.125, 0.3, 0.362, 0.4, 0.45, 0.487, 0.512, 0.55, 0.575, 0.6, 0.625]
    + [0.65, 0.662, 0.688, 0.7, 0.725, 0.75, 0.775, 0.787, 0.825, 0.912]
)
_NORMAL_SCORE_CORRELATION = 0.697

TEMPO_RANGE_BPM = (105.0, 125.0)  # a nuisance: it carries no label
VOCAL_RANGE_MIDI = (50.0, 74.0)  # centre of the melody: D3 (low voice) .. D5 (high)

CUE_SOURCES = {
    "drum_density": "drums",
    "drum_brightness": "drums",
    "bass_brightness": "bass",
    "vocal_register": "vocals",
    "vocal_brightness": "vocals",
    "other_brightness": "other",
    "other_sustain": "other",
}
"""The source whose stem carries each cue."""

AROUSAL_WEIGHTS = {
    "drum_density": 0.40,
    "drum_brightness": 0.25,
    "bass_brightness": 0.35,
}
VALENCE_WEIGHTS = {
    "vocal_register": 0.30,
    "vocal_brightness": 0.20,
    "other_brightness": 0.25,
    "other_sustain": 0.25,
}
"""Weights of the label functions over cues in [0, 1]; each sums to 1."""

NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
PROGRESSIONS = {
    # scale degrees (0-based), one chord per bar
    "major": ((0, 4, 5, 3), (0, 3, 4, 3), (0, 5, 3, 4), (3, 0, 4, 5)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 5, 3, 4), (0, 6, 5, 6)),
}
_PARAMETER_JITTER = 0.12  # sd of each cue around its dimension's target


@dataclass(frozen=True)
class TrackDesign:
    """Everything needed to render one track; the label-bearing cues come first.

    Every cue is in [0, 1] (the vocal register in MIDI) and lives in one stem
    (:data:`CUE_SOURCES`).

    Attributes:
        music_id: Track id (PMEmo-like).
        drum_density: 0 (quarter hi-hats, two kicks a bar) .. 1 (16ths, busy kick,
            ghost snares) (arousal).
        drum_brightness: 0 (dull, short hits) .. 1 (bright, ringing hats and
            snare) (arousal).
        bass_brightness: 0 (round, few harmonics) .. 1 (buzzing) bass (arousal).
        vocal_midi: Centre pitch of the vocal melody, MIDI (valence).
        vocal_brightness: 0 (dark, soft) .. 1 (bright, pressed) voice (valence).
        other_brightness: 0 (dark) .. 1 (bright) chords in "other" (valence).
        other_sustain: 0 (short stabs) .. 1 (held chords) in "other" (valence).
        tempo_bpm: Tempo in beats per minute (nuisance).
        major: 1 for a major key, 0 for minor (nuisance: 40 mel bands cannot
            hear it).
        key: Tonic pitch class 0..11 (nuisance).
        progression: Index into ``PROGRESSIONS[mode]`` (nuisance).
        duration_s: Length of the rendered excerpt in seconds (0.1 s resolution).
        chorus_start_s: Where the excerpt starts in the (imagined) full song.
        render_seed: Seed of every other random choice (melody, timbre, panning).
    """

    music_id: int
    drum_density: float
    drum_brightness: float
    bass_brightness: float
    vocal_midi: float
    vocal_brightness: float
    other_brightness: float
    other_sustain: float
    tempo_bpm: float
    major: int
    key: int
    progression: int
    duration_s: float
    chorus_start_s: int
    render_seed: int

    @property
    def mode(self) -> str:
        return "major" if self.major else "minor"

    @property
    def vocal_register(self) -> float:
        """The vocal register as a cue in [0, 1]."""
        return float(_unit(self.vocal_midi, *VOCAL_RANGE_MIDI))

    def cues(self) -> dict[str, float]:
        """Every cue in [0, 1], by name (:data:`CUE_SOURCES`)."""
        return {name: float(getattr(self, name)) for name in CUE_SOURCES}

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _unit(value: np.ndarray | float, low: float, high: float) -> np.ndarray:
    return (np.asarray(value, dtype=float) - low) / (high - low)


def _scale(unit: np.ndarray | float, low: float, high: float) -> np.ndarray:
    return low + np.asarray(unit, dtype=float) * (high - low)


def _weighted(weights: dict[str, float], cues: dict[str, np.ndarray]) -> np.ndarray:
    return sum(w * np.asarray(cues[name], dtype=float) for name, w in weights.items())


def arousal_of(cues: dict[str, np.ndarray | float]) -> np.ndarray:
    """Noiseless arousal on PMEmo's [0, 1] scale: weighted drum and bass cues."""
    return _weighted(AROUSAL_WEIGHTS, cues)


def valence_of(cues: dict[str, np.ndarray | float]) -> np.ndarray:
    """Noiseless valence on PMEmo's [0, 1] scale: weighted vocal and "other" cues."""
    return _weighted(VALENCE_WEIGHTS, cues)


def noiseless_labels(design: TrackDesign) -> tuple[float, float]:
    """``(arousal, valence)`` of one design, before annotation noise."""
    cues = design.cues()
    return float(arousal_of(cues)), float(valence_of(cues))


LABEL_WEIGHTS = {"arousal": AROUSAL_WEIGHTS, "valence": VALENCE_WEIGHTS}


def source_contributions(designs: list[TrackDesign]) -> dict[str, dict[str, float]]:
    """Each source's share of each dimension's noiseless label variance.

    A dimension's label is a sum of per-source parts ``y_s`` (the weighted cues of
    source ``s``); its variance splits exactly as ``Var(y) = sum_s Cov(y_s, y)``, so
    the share of ``s`` is ``Cov(y_s, y) / Var(y)``. Shares sum to 1 per dimension;
    a source with no cue in a dimension has share 0. The parts of one dimension all
    follow its target, so they correlate positively and no share is negative in
    practice (a negative one is clipped to 0 and the rest renormalised).

    Returns:
        ``{dimension: {source: share}}`` over :data:`emomucs.SOURCES`.
    """
    cues = [design.cues() for design in designs]
    shares: dict[str, dict[str, float]] = {}
    for dimension, weights in LABEL_WEIGHTS.items():
        parts = {
            source: np.array(
                [
                    sum(
                        w * c[n] for n, w in weights.items() if CUE_SOURCES[n] == source
                    )
                    for c in cues
                ]
            )
            for source in SOURCES
        }
        total = sum(parts.values())
        variance = float(np.var(total))
        raw = {
            source: max(
                0.0, float(np.mean((part - part.mean()) * (total - total.mean())))
            )
            / variance
            if variance > 0
            else 0.0
            for source, part in parts.items()
        }
        norm = sum(raw.values()) or 1.0
        shares[dimension] = {source: value / norm for source, value in raw.items()}
    return shares


def sample_pmemo_targets(rng: np.random.Generator, count: int) -> np.ndarray:
    """Draw ``(arousal, valence)`` pairs, shape ``(count, 2)``, like PMEmo's labels."""
    rho = _NORMAL_SCORE_CORRELATION
    normal = rng.standard_normal((count, 2))
    normal[:, 1] = rho * normal[:, 0] + np.sqrt(1.0 - rho**2) * normal[:, 1]
    uniform = ndtr(normal)
    arousal = np.interp(uniform[:, 0], _QUANTILE_LEVELS, _AROUSAL_QUANTILES)
    valence = np.interp(uniform[:, 1], _QUANTILE_LEVELS, _VALENCE_QUANTILES)
    return np.column_stack([arousal, valence])


def _spread(rng: np.random.Generator, target: float, weights: np.ndarray) -> np.ndarray:
    """Parameters in [0, 1] scattered around ``target`` with weighted mean ``target``.

    The jitter has zero weighted mean, so the label function returns the target
    exactly unless a parameter is clipped at an end of its range; its scatter keeps
    the parameters of one dimension from being copies of each other.
    """
    jitter = rng.normal(0.0, _PARAMETER_JITTER, len(weights))
    jitter -= np.dot(weights, jitter) / weights.sum()
    return np.clip(target + jitter, 0.0, 1.0)


def design_from_targets(
    arousal: float,
    valence: float,
    rng: np.random.Generator,
    music_id: int,
    duration_s: float,
) -> TrackDesign:
    """Cues whose noiseless labels are (close to) the targets, and the nuisances.

    Each dimension's cues scatter around its target (:func:`_spread`); the nuisances
    (tempo, mode, key, progression) are drawn independently of the labels.
    """
    arousal_cues = dict(
        zip(
            AROUSAL_WEIGHTS,
            _spread(rng, arousal, np.array(list(AROUSAL_WEIGHTS.values()))),
            strict=True,
        )
    )
    valence_cues = dict(
        zip(
            VALENCE_WEIGHTS,
            _spread(rng, valence, np.array(list(VALENCE_WEIGHTS.values()))),
            strict=True,
        )
    )
    cues = {
        name: round(float(v), 4) for name, v in {**arousal_cues, **valence_cues}.items()
    }
    register = cues.pop("vocal_register")
    major = int(rng.random() < 0.5)
    mode = "major" if major else "minor"
    return TrackDesign(
        music_id=int(music_id),
        vocal_midi=round(float(_scale(register, *VOCAL_RANGE_MIDI)), 2),
        **cues,
        tempo_bpm=round(float(rng.uniform(*TEMPO_RANGE_BPM)), 2),
        major=major,
        key=int(rng.integers(12)),
        progression=int(rng.integers(len(PROGRESSIONS[mode]))),
        duration_s=round(float(duration_s), 1),
        chorus_start_s=int(rng.integers(30, 150)),
        render_seed=int(rng.integers(2**31)),
    )


def chorus_durations(
    rng: np.random.Generator,
    count: int,
    shortest_s: float,
    longest_s: float,
    short_below_s: float,
    short_fraction: float,
) -> np.ndarray:
    """Chorus lengths (0.1 s) with exactly ``round(short_fraction * count)`` short ones.

    Short choruses are uniform in ``[shortest_s, short_below_s)``, the others in
    ``[short_below_s, longest_s]``; fixing the count (not a probability) guarantees
    that even a tiny corpus exercises zero padding.
    """
    if not shortest_s < short_below_s <= longest_s:
        raise ValueError(
            f"chorus durations need shortest < short_below <= longest, got "
            f"{shortest_s}, {short_below_s}, {longest_s}"
        )
    short = np.zeros(count, dtype=bool)
    short[rng.permutation(count)[: round(short_fraction * count)]] = True
    long_lengths = rng.uniform(short_below_s, longest_s, count)
    # 0.05 s below the threshold so rounding to 0.1 s cannot lift a short one to it
    short_lengths = rng.uniform(shortest_s, short_below_s - 0.05, count)
    return np.round(np.where(short, short_lengths, long_lengths), 1)


def add_label_noise(
    labels: np.ndarray, noise_sd: float, rng: np.random.Generator
) -> np.ndarray:
    """Annotations: labels plus N(0, noise_sd²), clipped to [0, 1], 3 decimals as PMEmo."""
    noisy = labels + rng.normal(0.0, noise_sd, np.shape(labels))
    return np.round(np.clip(noisy, 0.0, 1.0), 3)


def _clipped_moments(
    labels: np.ndarray, noise_sd: float
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of ``clip(label + N(0, noise_sd²), 0, 1)`` for each label.

    Clipping at the ends of PMEmo's scale pulls the annotation of an extreme track
    towards the middle and shrinks its noise; these are the exact moments of that
    censored normal, so the ceiling stays right for any noise level.
    """
    labels = np.asarray(labels, dtype=float)
    if noise_sd == 0:
        return np.clip(labels, 0.0, 1.0), np.zeros_like(labels)
    low, high = -labels / noise_sd, (1.0 - labels) / noise_sd
    below, inside = ndtr(low), ndtr(high) - ndtr(low)
    above = 1.0 - ndtr(high)
    pdf_low = np.exp(-0.5 * low**2) / np.sqrt(2 * np.pi)
    pdf_high = np.exp(-0.5 * high**2) / np.sqrt(2 * np.pi)
    # moments of the noise z = (Y - label) / sd, over the three regions
    first = (pdf_low - pdf_high) * noise_sd + low * noise_sd * below
    first += high * noise_sd * above
    second = noise_sd**2 * (inside - high * pdf_high + low * pdf_low)
    second += (low * noise_sd) ** 2 * below + (high * noise_sd) ** 2 * above
    return labels + first, second - first**2


def label_ceiling(
    noiseless: np.ndarray, annotated: np.ndarray, noise_sd: float
) -> dict[str, float]:
    """The best R² reachable on one label dimension, in theory and on this sample.

    The best possible model predicts ``E[annotation | parameters]``, which is the
    noiseless label except near 0 and 1, where the annotations are clipped. Variances
    are on the models' [-1, 1] scale (``2v - 1``); R² does not depend on the scale.

    Args:
        noiseless: Labels from the parameters alone, [0, 1] scale.
        annotated: The published labels (noise added, clipped, rounded), [0, 1] scale.
        noise_sd: sd of the added noise on the [0, 1] scale.

    Returns:
        ``noise_var`` (the annotations' variance around the best prediction, mean over
        tracks) and ``nominal_noise_var`` ((2 sd)², before clipping);
        ``expected_label_var`` (over the noise) and ``label_var`` (of these
        annotations); ``r2_theoretical = 1 - noise_var / expected_label_var``;
        ``r2_empirical``, the R² of the best predictions against these annotations;
        ``r2_noiseless``, the same for the noiseless labels themselves (lower only
        where clipping moved the annotations); ``clipped_fraction`` of annotations at
        0 or 1.
    """
    best, spread = _clipped_moments(noiseless, noise_sd)
    best, spread = 2.0 * best - 1.0, 4.0 * spread
    observed = 2.0 * np.asarray(annotated, dtype=float) - 1.0
    noise_var = float(np.mean(spread))
    expected_label_var = float(np.var(best)) + noise_var
    label_var = float(np.var(observed))
    residual = float(np.mean((observed - best) ** 2))
    truth = 2.0 * np.asarray(noiseless, dtype=float) - 1.0
    residual_noiseless = float(np.mean((observed - truth) ** 2))
    return {
        "nominal_noise_var": (2.0 * noise_sd) ** 2,
        "noise_var": noise_var,
        "noiseless_label_var": float(np.var(truth)),
        "expected_label_var": expected_label_var,
        "label_var": label_var,
        "r2_theoretical": 1.0 - noise_var / expected_label_var,
        "r2_empirical": 1.0 - residual / label_var,
        "r2_noiseless": 1.0 - residual_noiseless / label_var,
        "clipped_fraction": float(np.mean((annotated <= 0.0) | (annotated >= 1.0))),
    }


def title_of(design: TrackDesign) -> str:
    """A readable title: key, mode and tempo."""
    return f"{NOTE_NAMES[design.key]} {design.mode}, {design.tempo_bpm:.0f} bpm"


def design_corpus(
    count: int,
    seed: int,
    first_music_id: int = 1001,
    chorus_range_s: tuple[float, float] = (14.0, 30.0),
    short_below_s: float = 20.0,
    short_fraction: float = 0.15,
    noise_sd: float = 0.1,
) -> tuple[list[TrackDesign], np.ndarray]:
    """Designs of ``count`` labelled tracks and their annotations.

    Returns:
        The designs (musicIds ``first_music_id, first_music_id + 1, ...``) and the
        annotated labels, shape ``(count, 2)``: arousal, valence on [0, 1].
    """
    rng = np.random.default_rng(seed)
    targets = sample_pmemo_targets(rng, count)
    durations = chorus_durations(
        rng, count, *chorus_range_s, short_below_s, short_fraction
    )
    designs = [
        design_from_targets(arousal, valence, rng, first_music_id + index, duration)
        for index, ((arousal, valence), duration) in enumerate(
            zip(targets, durations, strict=True)
        )
    ]
    labels = np.array([noiseless_labels(design) for design in designs]).reshape(-1, 2)
    return designs, add_label_noise(labels, noise_sd, rng)


def design_multitrack(count: int, seed: int, duration_s: float) -> list[TrackDesign]:
    """Unlabelled designs of equal length, for training a source separator."""
    rng = np.random.default_rng(seed)
    targets = sample_pmemo_targets(rng, count)
    return [
        design_from_targets(arousal, valence, rng, index, duration_s)
        for index, (arousal, valence) in enumerate(targets)
    ]
