"""Single-source models: shapes, the three cut points, sizes and initialisation."""

import math

import pytest
import torch

from emomucs.models import C1D, C2D, WaveC1D, build_model
from emomucs.models.c2d import plan_pools

from .conftest import BATCH, N_FRAMES, N_MELS, SOURCE_CONFIGS


def test_c1d_flattens_816_values_at_20_seconds():
    model = C1D(n_mels=40, n_frames=862)
    assert model.feature_size == 816
    model.eval()
    f = model.features(torch.randn(2, 40, 862))
    assert f.shape == (2, 816)


@pytest.mark.parametrize("name", list(SOURCE_CONFIGS))
def test_cut_points_compose_to_forward(name):
    kwargs, shape = SOURCE_CONFIGS[name]
    model = build_model(name, **kwargs).eval()
    x = torch.randn(BATCH, *shape)
    f = model.features(x)
    h = model.hidden(f)
    y = model.output(h)
    assert f.shape == (BATCH, model.feature_size)
    assert h.shape == (BATCH, model.hidden_size)
    assert y.shape == (BATCH, 2)
    torch.testing.assert_close(model(x), y, rtol=0, atol=0)


def test_c1d_sizes_and_parameter_count():
    model = C1D(n_mels=N_MELS, n_frames=N_FRAMES)
    # 128 frames: conv 121, pool 30, conv 23, pool 5; 16 filters.
    assert model.feature_size == 5 * 16
    assert model.hidden_size == 64
    expected = (
        (40 * 32 * 8 + 32) + 2 * 32  # conv1 + BN
        + (32 * 16 * 8 + 16) + 2 * 16  # conv2 + BN
        + (80 * 64 + 64) + (64 * 2 + 2)  # FC 64, FC 2
    )  # fmt: skip
    assert sum(p.numel() for p in model.parameters()) == expected


def test_c2d_pools_three_in_time_at_20_seconds():
    model = C2D(n_mels=40, n_frames=862)
    assert model.pool_sizes == [(2, 3)] * 5
    assert model.feature_size == 32
    assert not model.has_hidden_layer
    assert model.hidden_size == 32


def test_c2d_parameter_count_with_and_without_hidden_layer():
    convs = (1 * 32 * 9 + 32) + 4 * (32 * 32 * 9 + 32) + 5 * 2 * 32
    plain = C2D(n_mels=N_MELS, n_frames=N_FRAMES)
    hidden = C2D(n_mels=N_MELS, n_frames=N_FRAMES, hidden_layer=True, hidden_units=16)
    assert sum(p.numel() for p in plain.parameters()) == convs + 32 * 2 + 2
    assert sum(p.numel() for p in hidden.parameters()) == (
        convs + (32 * 16 + 16) + (16 * 2 + 2)
    )
    x = torch.randn(BATCH, N_MELS, N_FRAMES)
    plain.eval()
    assert torch.equal(plain.hidden(plain.features(x)), plain.features(x))


@pytest.mark.parametrize(("n_mels", "n_frames"), [(40, 128), (8, 16), (3, 5), (1, 1)])
def test_c2d_never_pools_a_dimension_to_zero(n_mels, n_frames):
    pools = plan_pools(n_mels, n_frames, [2] * 5, [4, 4, 5, 4, 4], 1360)
    height, width = n_mels, n_frames
    for f, t in pools:
        assert f >= 1 and t >= 1
        height, width = height // f, width // t
        assert height >= 1 and width >= 1
    model = C2D(n_mels=n_mels, n_frames=n_frames).eval()
    assert model(torch.randn(BATCH, n_mels, n_frames)).shape == (BATCH, 2)


def test_c1d_rejects_too_few_frames_and_wrong_inputs():
    with pytest.raises(ValueError, match="too few"):
        C1D(n_mels=40, n_frames=40)
    model = C1D(n_mels=N_MELS, n_frames=N_FRAMES)
    with pytest.raises(ValueError, match=r"C1D: expected input .*got \(3, 40, 100\)"):
        model(torch.randn(3, 40, 100))
    with pytest.raises(ValueError, match="C1D: expected input"):
        model(torch.randn(3, 1, 40, 128))


def test_wave_c1d_gives_862_frames_for_20_seconds():
    model = WaveC1D(sample_rate=22050, n_samples=20 * 22050)
    assert model.n_frames == 862
    assert model.feature_size == 816
    with pytest.raises(ValueError, match="WaveC1D: expected mono audio"):
        model(torch.randn(2, 1, 20 * 22050))


def test_wave_c1d_mel_filterbank_peaks_at_a_tone():
    sr, kernel, hop = 22050, 1024, 512
    model = WaveC1D(sample_rate=sr, n_samples=hop * 127, kernel_size=kernel, stride=hop)
    front_end = model.feature_net[0].eval()
    centres = torch.linspace(0, 2595 * math.log10(1 + sr / 2 / 700), 42)[1:-1]
    centres_hz = 700 * (10 ** (centres / 2595) - 1)
    for band in (5, 20, 35):
        t = torch.arange(hop * 127) / sr
        tone = 0.5 * torch.sin(2 * math.pi * centres_hz[band] * t)
        with torch.no_grad():
            bands = front_end(tone[None])[0]
        # Away from the zero-padded edges, the loudest band is the tone's.
        assert bands.shape == (40, 128)
        assert torch.all(bands[:, 2:-2].argmax(dim=0) == band)


def test_wave_c1d_random_init_and_bad_init_name():
    torch.manual_seed(0)
    mel = WaveC1D(n_samples=16256, kernel_size=256, stride=128)
    torch.manual_seed(0)
    rnd = WaveC1D(
        n_samples=16256, kernel_size=256, stride=128, filterbank_init="random"
    )
    assert not torch.equal(
        mel.feature_net[0].conv.weight, rnd.feature_net[0].conv.weight
    )
    with pytest.raises(ValueError, match="unknown filterbank init 'gabor'"):
        WaveC1D(filterbank_init="gabor")


def test_initialisation_is_kaiming_and_xavier():
    torch.manual_seed(0)
    model = C1D(n_mels=N_MELS, n_frames=N_FRAMES)
    conv = model.feature_net[0].weight  # fan_in 40 * 8, bound sqrt(6 / fan_in)
    fc = model.hidden_net[1].weight  # bound sqrt(6 / (fan_in + fan_out))
    assert conv.abs().max() <= math.sqrt(6 / 320)
    assert conv.abs().max() > 0.9 * math.sqrt(6 / 320)
    assert fc.abs().max() <= math.sqrt(6 / (80 + 64))
    assert fc.abs().max() > 0.9 * math.sqrt(6 / (80 + 64))


@pytest.mark.parametrize("name", list(SOURCE_CONFIGS))
def test_construction_is_deterministic_under_manual_seed(name):
    kwargs, _ = SOURCE_CONFIGS[name]
    states = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        states.append(build_model(name, **kwargs).state_dict())
    same = all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    differ = any(not torch.equal(states[0][k], states[2][k]) for k in states[0])
    assert same and differ


@pytest.mark.parametrize(
    ("pooling", "size"), [("mean", 16), ("max", 16), ("stats", 32)]
)
@pytest.mark.parametrize("n_frames", [64, 128, 431])
def test_c1d_pooling_over_time_gives_a_size_independent_of_clip_length(
    pooling, size, n_frames
):
    model = C1D(n_mels=N_MELS, n_frames=n_frames, pooling=pooling).eval()
    x = torch.randn(BATCH, N_MELS, n_frames)
    assert model.feature_size == size
    assert model.features(x).shape == (BATCH, size)
    assert model(x).shape == (BATCH, 2)


def test_c1d_stats_pooling_is_mean_and_sd_of_the_last_feature_map():
    model = C1D(n_mels=N_MELS, n_frames=N_FRAMES, pooling="stats").eval()
    x = torch.randn(BATCH, N_MELS, N_FRAMES)
    with torch.no_grad():
        feature_map = model.feature_net[:-1](x)  # (batch, 16, 5)
        pooled = model.features(x)
    assert feature_map.shape == (BATCH, 16, 5)
    torch.testing.assert_close(pooled[:, :16], feature_map.mean(dim=-1))
    torch.testing.assert_close(pooled[:, 16:], feature_map.std(dim=-1, correction=0))


def test_c1d_flatten_is_the_default_and_unknown_pooling_is_refused():
    assert C1D(n_mels=N_MELS, n_frames=N_FRAMES).init_kwargs["pooling"] == "flatten"
    with pytest.raises(ValueError, match="C1D: unknown pooling 'median'"):
        C1D(n_mels=N_MELS, n_frames=N_FRAMES, pooling="median")
    wave = WaveC1D(n_samples=16256, kernel_size=256, stride=128, pooling="mean")
    assert wave.feature_size == 16
    assert wave(torch.randn(2, 16256)).shape == (2, 2)


def test_c2d_time_pooling_keeps_the_frequency_rows_apart():
    torch.manual_seed(0)
    model = C2D(N_MELS, N_FRAMES, n_filters=4, freq_pools=(2, 2, 2, 1, 1))
    rows = C2D(
        N_MELS, N_FRAMES, n_filters=4, freq_pools=(2, 2, 2, 1, 1), pooling="time"
    )
    rows.feature_net.load_state_dict(model.feature_net.state_dict())
    height = N_MELS // 8
    assert rows.feature_size == 4 * height and model.feature_size == 4
    x = torch.randn(BATCH, N_MELS, N_FRAMES)
    model.eval(), rows.eval()
    per_row = rows.features(x).reshape(BATCH, 4, height)
    # the global average is the mean of the rows the time pooling keeps apart
    assert torch.allclose(per_row.mean(-1), model.features(x), atol=1e-6)
    assert rows(x).shape == (BATCH, 2)
    with pytest.raises(ValueError, match="pooling must be"):
        C2D(N_MELS, N_FRAMES, pooling="frequency")
