"""The compact separator that ships in data/06_models/separator: what conf/base names,
loadable through Demucs' own repo mechanism, and still a separator."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from emomucs.config_loader import ConfigLoader
from emomucs.separation import ApplyOptions, SeparatorSpec, load_separator
from emomucs.separation.sdr import sdr
from emomucs.separation.separate import separate_batch
from emomucs.settings import CONFIG_LOADER_ARGS
from emomucs.synthetic.design import design_multitrack
from emomucs.synthetic.render import render_track

PROJECT = Path(__file__).resolve().parents[2]


def _base_separator_options() -> dict:
    """separation.separator as conf/base resolves it (the repo is globals.yml's)."""
    arguments = {**CONFIG_LOADER_ARGS, "default_run_env": "base"}
    loader = ConfigLoader(str(PROJECT / "conf"), **arguments)
    return loader["parameters"]["separation"]["separator"]


def test_the_shipped_file_is_named_by_its_checksum_and_is_what_conf_loads():
    options = _base_separator_options()
    files = sorted((PROJECT / options["repo"]).glob(f"{options['name']}-*.th"))
    assert len(files) == 1, files
    digest = hashlib.sha256(files[0].read_bytes()).hexdigest()
    assert files[0].stem.rsplit("-", 1)[1] == digest[:8]
    separator = load_separator(SeparatorSpec.from_options(options))
    assert separator.identity.startswith(f"local:{options['name']}:")
    assert separator.sources == ("drums", "bass", "other", "vocals")


def test_the_shipped_separator_separates_a_song_it_never_saw():
    # seed 99 is neither the corpus' (2020) nor the training multitracks' (4242)
    design = design_multitrack(1, seed=99, duration_s=6.0)[0]
    separator = load_separator(SeparatorSpec.from_options(_base_separator_options()))
    rate = separator.sample_rate
    stems = render_track(design, sample_rate=rate, channels=2).mean(axis=1)[:, None]
    mix = stems.sum(axis=0)
    options = ApplyOptions(device="cpu")
    estimate = separate_batch(separator.model, [mix], rate, rate, options)[0]
    gain = sdr(stems, estimate) - sdr(stems, np.broadcast_to(mix, stems.shape))
    # the held-out songs' gain is +11.9 dB on average; a broken file gives about 0
    assert gain.mean() > 6.0, gain
    assert gain.min() > 2.0, gain
