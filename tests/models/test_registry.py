"""Registry and checkpoints: names, errors and a weights_only round trip."""

import io

import numpy as np
import pytest
import torch
from torch import nn

from emomucs.models import (
    C1D,
    MODEL_REGISTRY,
    EmoMucs,
    build_model,
    from_checkpoint,
    to_checkpoint,
)

from .conftest import BATCH, N_FRAMES, N_MELS, SOURCE_CONFIGS, SOURCES


def test_registry_names_every_model():
    assert set(MODEL_REGISTRY) == {"C1D", "WaveC1D", "C2D", "EmoMucs"}
    for name, cls in MODEL_REGISTRY.items():
        assert cls.name == name
    model = build_model("C1D", n_mels=N_MELS, n_frames=N_FRAMES, hidden_units=8)
    assert isinstance(model, C1D) and model.hidden_size == 8


def test_registry_rejects_unknown_names():
    with pytest.raises(ValueError, match=r"unknown model 'C3D'; known models: C1D"):
        build_model("C3D")


def test_to_checkpoint_rejects_unregistered_modules():
    with pytest.raises(ValueError, match="Linear is not a registered model"):
        to_checkpoint(nn.Linear(2, 2))


def test_from_checkpoint_names_missing_keys():
    with pytest.raises(ValueError, match=r"checkpoint lacks \['state'\]"):
        from_checkpoint({"model": "C1D", "kwargs": {}})


def roundtrip(checkpoint):
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


CASES = [(name, None) for name in SOURCE_CONFIGS] + [
    ("C1D", "early"),
    ("C2D", "mid"),
    ("WaveC1D", "late"),
    ("C1D", "attention"),
    ("C2D", "attention"),
]


@pytest.mark.parametrize(("name", "fusion"), CASES)
def test_checkpoint_round_trip_gives_identical_outputs(name, fusion):
    kwargs, shape = SOURCE_CONFIGS[name]
    if fusion is None:
        model, x = build_model(name, **kwargs), torch.randn(BATCH, *shape)
    else:
        model = build_model(
            "EmoMucs",
            source_model=name,
            source_kwargs=kwargs,
            sources=SOURCES,
            fusion=fusion,
        )
        model.freeze_sources()  # training state, not part of the checkpoint
        x = torch.randn(BATCH, len(SOURCES), *shape)
    # A training step moves the weights and batch-norm statistics off their
    # initial values, so the round trip has something to preserve.
    model.train()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    model(x).sum().backward()
    optimiser.step()

    checkpoint = to_checkpoint(model)
    loaded = roundtrip(checkpoint)
    assert loaded["model"] == (name if fusion is None else "EmoMucs")
    assert loaded["kwargs"] == model.init_kwargs
    rebuilt = from_checkpoint(loaded)
    assert type(rebuilt) is type(model) and not rebuilt.training
    model.eval()
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))
        if fusion == "attention":
            assert torch.equal(rebuilt.attention_weights(x), model.attention_weights(x))


def test_checkpoint_does_not_follow_later_training():
    model = build_model("C1D", n_mels=N_MELS, n_frames=N_FRAMES)
    checkpoint = to_checkpoint(model)
    with torch.no_grad():
        model.output_net[1].weight.add_(1.0)
    assert not torch.equal(
        checkpoint["state"]["output_net.1.weight"], model.output_net[1].weight
    )


def test_checkpoint_kwargs_are_plain_python():
    model = EmoMucs(
        "C2D",
        {"n_mels": N_MELS, "n_frames": N_FRAMES, "time_pools": (4, 4, 5, 4, 4)},
        tuple(SOURCES),
        "late",
    )
    kwargs = to_checkpoint(model)["kwargs"]
    assert kwargs["sources"] == SOURCES
    assert kwargs["source_kwargs"]["time_pools"] == [4, 4, 5, 4, 4]

    def plain(value):
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return value is None or isinstance(value, (str, int, float, bool))

    assert plain(kwargs)


def test_non_plain_kwargs_are_refused():
    with pytest.raises(TypeError, match=r"source_kwargs.n_mels: Tensor"):
        EmoMucs("C1D", {"n_mels": torch.tensor(40)}, SOURCES, "late")


def test_mismatched_checkpoint_state_is_refused():
    checkpoint = to_checkpoint(build_model("C1D", n_mels=N_MELS, n_frames=N_FRAMES))
    checkpoint["kwargs"]["hidden_units"] = 32
    with pytest.raises(ValueError, match="checkpoint state does not fit C1D"):
        from_checkpoint(checkpoint)


@pytest.mark.parametrize("fusion", ["early", "mid", "late"])
def test_pooled_c1d_emomucs_round_trips_and_fuses_pooled_features(fusion):
    kwargs = {"n_mels": N_MELS, "n_frames": N_FRAMES, "pooling": "stats"}
    model = build_model(
        "EmoMucs", source_model="C1D", source_kwargs=kwargs, sources=SOURCES,
        fusion=fusion,
    )  # fmt: skip
    part = {"early": 32, "mid": 64, "late": 2}[fusion]
    assert model.fused_size == part * len(SOURCES)
    x = torch.randn(BATCH, len(SOURCES), N_MELS, N_FRAMES)
    model.train()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    model(x).sum().backward()
    optimiser.step()
    loaded = roundtrip(to_checkpoint(model))
    assert loaded["kwargs"]["source_kwargs"]["pooling"] == "stats"
    rebuilt = from_checkpoint(loaded)
    model.eval()
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


def test_init_kwargs_name_every_argument_with_its_default():
    """capture_init records the constructor's arguments, defaults filled in, as
    plain Python: a checkpoint rebuilds the same network after a default changes."""
    model = C1D(n_mels=N_MELS, n_frames=N_FRAMES, n_filters=(8, 4))
    assert model.init_kwargs == {
        "n_mels": N_MELS,
        "n_frames": N_FRAMES,
        "n_filters": [8, 4],  # a tuple becomes a list (weights_only loading)
        "kernel_size": 8,
        "pool_size": 4,
        "hidden_units": 64,
        "dropout": 0.5,
        "n_outputs": 2,
        "pooling": "flatten",
    }
    fused = EmoMucs("C1D", {"n_mels": N_MELS, "n_frames": N_FRAMES}, SOURCES, "late")
    assert fused.init_kwargs["dropout"] == 0.3
    assert fused.init_kwargs["sources"] == list(SOURCES)
    with pytest.raises(TypeError, match="C1D kwargs.n_mels: ndarray is not a plain"):
        C1D(n_mels=np.array(N_MELS), n_frames=N_FRAMES)


def test_a_checkpoint_with_hand_written_kwargs_still_loads():
    """Checkpoints saved before capture_init (every argument written out by hand,
    the same dict) rebuild the same model."""
    model = C1D(n_mels=N_MELS, n_frames=N_FRAMES, pooling="mean")
    checkpoint = to_checkpoint(model)
    checkpoint["kwargs"] = {
        "n_mels": N_MELS,
        "n_frames": N_FRAMES,
        "n_filters": [32, 16],
        "kernel_size": 8,
        "pool_size": 4,
        "hidden_units": 64,
        "dropout": 0.5,
        "n_outputs": 2,
        "pooling": "mean",
    }
    rebuilt = from_checkpoint(checkpoint)
    assert rebuilt.init_kwargs == model.init_kwargs
    x = torch.randn(BATCH, N_MELS, N_FRAMES)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model.eval()(x))
