"""EmoMucs with a network per source: built from a variant's ``per_source``."""

from __future__ import annotations

import pytest
import torch

from emomucs.errors import SettingsError
from emomucs.models import from_checkpoint, to_checkpoint
from emomucs.parameters import validate_parameters
from emomucs.training import ExperimentSpec

NETWORKS = {"C1D": {"pooling": "mean"}, "C2D": {"n_filters": 8}}
SHAPE = {"n_mels": 40, "n_frames": 87}
STEMS = ["drums", "bass", "other", "vocals"]


def _spec(fusion: str, **extra) -> ExperimentSpec:
    params = {
        "model": "EmoMucs",
        "source_model": "C1D",
        "sources": STEMS,
        "fusion": fusion,
        "per_source": {
            "vocals": {"source_model": "C2D", "model_kwargs": {"hidden_layer": True}},
            "other": {"source_model": "C2D", "model_kwargs": {"n_filters": 4}},
        },
        **extra,
    }
    if fusion == "mid":  # every source network needs a hidden layer
        params["per_source"]["other"]["model_kwargs"]["hidden_layer"] = True
    return ExperimentSpec.from_params(params, NETWORKS)


@pytest.mark.parametrize("fusion", ["early", "mid", "late", "attention"])
def test_each_source_gets_its_own_network_and_the_parts_line_up(fusion):
    torch.manual_seed(0)
    model = _spec(fusion).build(SHAPE).eval()
    kinds = {s: type(net).__name__ for s, net in model.source_nets.items()}
    assert kinds == {"drums": "C1D", "bass": "C1D", "other": "C2D", "vocals": "C2D"}
    assert model.source_nets["other"].init_kwargs["n_filters"] == 4
    assert model.source_nets["vocals"].init_kwargs["n_filters"] == 8  # shared C2D
    assert model.source_nets["drums"].init_kwargs["pooling"] == "mean"  # shared C1D
    x = torch.randn(3, 4, *SHAPE.values())
    fused = model.fuse(x)
    slices = model.part_slices()
    assert fused.shape[1] == slices["vocals"].stop == model.fused_size
    # each source's columns are its own network's part
    net = model.source_nets["other"]
    own = model._source_part(net, x[:, 2])
    assert torch.allclose(fused[:, slices["other"]], own)
    if fusion == "early":  # C1D's features and C2D's differ in size
        assert len(set(model.part_sizes)) > 1
    rebuilt = from_checkpoint(to_checkpoint(model))
    assert torch.allclose(rebuilt(x), model(x))


def test_uniform_variants_build_and_describe_themselves_as_before():
    """A variant without per_source builds one network for all; its spec's dict
    (cache keys, fingerprints) has no new field."""
    spec = ExperimentSpec.from_params(
        {"model": "EmoMucs", "source_model": "C1D", "sources": STEMS, "fusion": "late"},
        NETWORKS,
    )
    model = spec.build(SHAPE)
    assert model.init_kwargs["source_networks"] is None
    assert {type(net).__name__ for net in model.source_nets.values()} == {"C1D"}
    # a checkpoint written before source_networks existed rebuilds the same model
    checkpoint = to_checkpoint(model)
    del checkpoint["kwargs"]["source_networks"]
    x = torch.randn(2, 4, *SHAPE.values())
    assert torch.allclose(from_checkpoint(checkpoint)(x), model.eval()(x))
    assert not {"per_source", "representation"} & set(spec.to_dict())
    assert "[" not in spec.label


def test_label_names_each_sources_network():
    label = _spec("late").label
    assert label.endswith("[vocals: C2D hidden_layer=True; other: C2D n_filters=4]")


def test_schema_accepts_per_source_and_rejects_misspellings():
    entry = {
        "model": "EmoMucs",
        "source_model": "C1D",
        "sources": STEMS,
        "fusion": "late",
        "per_source": {"vocals": {"source_model": "C2D"}},
    }
    validate_parameters({"source_specific": {"late_full": {"experiment": entry}}})
    wrong = [
        ({"vocals": {"source_modle": "C2D"}}, "did you mean .*source_model"),
        ({"vocals": {"source_model": "C2d"}}, "'C1D', 'C2D' or 'WaveC1D'"),
        (
            {"vocals": {"source_model": "C2D", "model_kwargs": {"n_filter": 4}}},
            "per_source.vocals.model_kwargs.n_filter .*did you mean .*n_filters",
        ),
    ]
    for per_source, message in wrong:
        # the whole experiment, or only the setting over the grid's (as conf has it)
        for bad in ({**entry, "per_source": per_source}, {"per_source": per_source}):
            with pytest.raises(SettingsError, match=message):
                validate_parameters(
                    {"source_specific": {"late_full": {"experiment": bad}}}
                )


def test_spec_refuses_what_cannot_train():
    with pytest.raises(ValueError, match="per_source names 'piano'"):
        _spec("late", per_source={"piano": {"source_model": "C2D"}})
    with pytest.raises(ValueError, match="WaveC1D reads"):  # one input tensor
        _spec("late", per_source={"vocals": {"source_model": "WaveC1D"}})
    with pytest.raises(ValueError, match="mid fusion needs a hidden layer"):
        ExperimentSpec.from_params(
            {
                "model": "EmoMucs",
                "source_model": "C1D",
                "sources": STEMS,
                "fusion": "mid",
                "per_source": {"vocals": {"source_model": "C2D"}},
            },
            NETWORKS,
        ).build(SHAPE)
