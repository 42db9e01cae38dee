"""EmoMucs: fusion shapes, loading, freezing, fine-tuning and trainable parameters."""

import pytest
import torch

from emomucs.models import EmoMucs, build_model

from .conftest import BATCH, N_FRAMES, N_MELS, SOURCE_CONFIGS, SOURCES

C1D_KWARGS = {"n_mels": N_MELS, "n_frames": N_FRAMES}


def emomucs(fusion="late", source_model="C1D", source_kwargs=None, **kwargs):
    kwargs.setdefault("sources", SOURCES)
    return EmoMucs(source_model, source_kwargs or C1D_KWARGS, fusion=fusion, **kwargs)


def batch(shape=(N_MELS, N_FRAMES), n_sources=len(SOURCES)):
    return torch.randn(BATCH, n_sources, *shape)


def source_state(model):
    return {k: v.clone() for k, v in model.source_nets.state_dict().items()}


def states_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def one_step(model, x, params=None):
    optimiser = torch.optim.Adam(params or model.parameters(), lr=0.01)
    optimiser.zero_grad()
    model(x).pow(2).sum().backward()
    optimiser.step()


@pytest.mark.parametrize("fusion", ["early", "mid", "late"])
@pytest.mark.parametrize("name", list(SOURCE_CONFIGS))
def test_every_model_and_fusion_predicts_two_values(name, fusion):
    kwargs, shape = SOURCE_CONFIGS[name]
    model = emomucs(fusion, name, kwargs)
    single = build_model(name, **kwargs)
    part = {
        "early": single.feature_size,
        "mid": single.hidden_size,
        "late": single.n_outputs,
    }[fusion]
    assert model.fused_size == part * len(SOURCES)
    assert model.head[1].in_features == part * len(SOURCES)
    assert model.head[1].out_features == 32 * len(SOURCES)
    x = batch(shape)
    model.eval()
    assert model.fuse(x).shape == (BATCH, model.fused_size)
    y = model(x)
    assert y.shape == (BATCH, 2)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", list(SOURCE_CONFIGS))
def test_attention_weights_sum_to_one_per_track_and_dimension(name):
    kwargs, shape = SOURCE_CONFIGS[name]
    model = emomucs("attention", name, kwargs).eval()
    x = batch(shape)
    single = build_model(name, **kwargs)
    assert model.fused_size == single.hidden_size * len(SOURCES)
    assert model.fuse(x).shape == (BATCH, model.fused_size)
    weights = model.attention_weights(x)
    assert weights.shape == (BATCH, 2, len(SOURCES))
    assert (weights > 0).all()
    assert torch.allclose(weights.sum(dim=2), torch.ones(BATCH, 2))
    # Each dimension has its own query: its weights differ from the other's.
    assert not torch.allclose(weights[:, 0], weights[:, 1])
    y = model(x)
    assert y.shape == (BATCH, 2) and y.abs().max() < 1  # a mean of tanh outputs
    # The prediction is the weighted sum of the sources' own predictions.
    embeddings, _ = model.head.embed_and_weigh(model.fuse(x))
    own = model.head.source_predictions(embeddings)
    assert torch.allclose(y, (weights * own).sum(dim=2), atol=1e-6)


def test_attention_over_c2d_cuts_at_its_features():
    """C2D without a hidden layer: attention reads its convolutional features (mid
    fusion refuses it)."""
    kwargs = {"n_mels": N_MELS, "n_frames": N_FRAMES}
    model = emomucs("attention", "C2D", kwargs).eval()
    x = batch()
    net = model.source_nets["vocals"]
    size = net.feature_size
    assert torch.equal(model.fuse(x)[:, 3 * size :], net.features(x[:, 3]))


def test_only_attention_fusion_has_weights():
    with pytest.raises(ValueError, match="late fusion has no attention weights"):
        emomucs("late").attention_weights(batch())


def test_fusion_parts_come_from_each_source_in_input_order():
    model = emomucs("mid").eval()
    x = batch()
    fused = model.fuse(x)
    size = model.source_nets["drums"].hidden_size
    for i, source in enumerate(SOURCES):
        net = model.source_nets[source]
        expected = net.hidden(net.features(x[:, i]))
        assert torch.equal(fused[:, i * size : (i + 1) * size], expected)


def test_mid_fusion_needs_a_hidden_layer():
    with pytest.raises(ValueError, match="hidden_layer: true"):
        emomucs("mid", "C2D", {"n_mels": N_MELS, "n_frames": N_FRAMES})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fusion": "cross"}, "unknown fusion 'cross'"),
        ({"source_model": "C3D"}, "unknown model 'C3D'"),
        ({"source_model": "EmoMucs"}, "cannot be EmoMucs"),
        ({"sources": []}, "no sources"),
        ({"sources": ["bass", "bass"]}, "repeated source"),
    ],
)
def test_bad_configurations_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        emomucs(**kwargs)


def test_wrong_number_of_sources_is_refused():
    model = emomucs()
    with pytest.raises(ValueError, match=r"expected input \(batch, 4 sources"):
        model(batch(n_sources=3))


def test_subset_of_sources():
    model = emomucs("early", sources=["vocals", "drums"]).eval()
    assert list(model.source_nets) == ["vocals", "drums"]
    assert model(batch(n_sources=2)).shape == (BATCH, 2)


def trained_singles(source_model="C1D", kwargs=C1D_KWARGS):
    singles = {}
    for seed, source in enumerate(SOURCES):
        torch.manual_seed(100 + seed)
        net = build_model(source_model, **kwargs)
        # One step so batch-norm statistics are not the defaults either.
        net.train()
        net(torch.randn(BATCH, N_MELS, N_FRAMES)).sum().backward()
        singles[source] = net
    return singles


def test_load_source_states_copies_weights():
    singles = trained_singles()
    model = emomucs("late")
    model.load_source_states({s: net.state_dict() for s, net in singles.items()})
    for source, net in singles.items():
        assert states_equal(model.source_nets[source].state_dict(), net.state_dict())
    # A copy, not shared storage: changing the single model leaves EmoMucs alone.
    with torch.no_grad():
        singles["bass"].output_net[1].weight.add_(1.0)
    assert not torch.equal(
        model.source_nets["bass"].output_net[1].weight,
        singles["bass"].output_net[1].weight,
    )


def test_load_source_states_accepts_checkpoints_and_checks_them():
    from emomucs.models import to_checkpoint

    singles = trained_singles()
    checkpoints = {s: to_checkpoint(net) for s, net in singles.items()}
    model = emomucs("mid")
    model.load_source_states(checkpoints)
    assert states_equal(
        model.source_nets["vocals"].state_dict(), singles["vocals"].state_dict()
    )
    other = build_model("C1D", n_mels=N_MELS, n_frames=N_FRAMES, hidden_units=32)
    with pytest.raises(ValueError, match="source 'other': checkpoint kwargs"):
        model.load_source_states({**checkpoints, "other": to_checkpoint(other)})
    c2d = build_model("C2D", n_mels=N_MELS, n_frames=N_FRAMES)
    with pytest.raises(ValueError, match="source 'bass': checkpoint is a C2D"):
        model.load_source_states({**checkpoints, "bass": to_checkpoint(c2d)})


def test_load_source_states_names_the_mismatched_source():
    singles = {s: net.state_dict() for s, net in trained_singles().items()}
    wider = build_model("C1D", n_mels=N_MELS, n_frames=N_FRAMES, hidden_units=32)
    model = emomucs("late")
    with pytest.raises(ValueError, match="source 'other': state does not fit C1D"):
        model.load_source_states({**singles, "other": wider.state_dict()})
    missing = {s: v for s, v in singles.items() if s != "drums"}
    with pytest.raises(ValueError, match=r"missing \['drums'\]"):
        model.load_source_states(missing)
    with pytest.raises(ValueError, match=r"unknown \['piano'\]"):
        model.load_source_states({**singles, "piano": singles["bass"]})


@pytest.mark.parametrize("fusion", ["early", "mid", "late", "attention"])
def test_freeze_keeps_sources_fixed_and_in_eval_mode(fusion):
    model = emomucs(fusion)
    model.load_source_states(
        {s: net.state_dict() for s, net in trained_singles().items()}
    )
    model.freeze_sources()
    model.train()
    assert model.training and model.head.training and model.sources_frozen
    assert not any(m.training for m in model.source_nets.modules())
    before_sources, before_head = source_state(model), model.head.state_dict()
    before_head = {k: v.clone() for k, v in before_head.items()}
    x = batch()
    # Eval-mode sources: no dropout, so their part of the fusion is repeatable.
    assert torch.equal(model.fuse(x), model.fuse(x))
    one_step(model, x)  # an optimiser over all parameters, frozen ones included
    after_head = model.head.state_dict()
    # Parameters and batch-norm running statistics are untouched.
    assert states_equal(source_state(model), before_sources)
    assert all(not torch.equal(before_head[k], after_head[k]) for k in before_head)
    assert {id(p) for p in model.trainable_parameters()} == {
        id(p) for p in model.head.parameters()
    }


def test_unfreeze_restores_training():
    model = emomucs("late")
    model.freeze_sources()
    model.unfreeze_sources()
    model.train()
    assert not model.sources_frozen
    assert all(m.training for m in model.source_nets.modules())
    assert all(p.requires_grad for p in model.parameters())


def test_finetune_changes_loaded_sources():
    model = emomucs("late")
    model.load_source_states(
        {s: net.state_dict() for s, net in trained_singles().items()}
    )
    model.train()
    before = source_state(model)
    one_step(model, batch(), model.trainable_parameters())
    after = source_state(model)
    for source in SOURCES:
        for key in ("feature_net.0.weight", "output_net.1.weight"):
            name = f"{source}.{key}"
            assert not torch.equal(before[name], after[name]), name
        running = f"{source}.feature_net.2.running_mean"
        assert not torch.equal(before[running], after[running])


def test_trainable_parameters_follow_the_cut():
    for fusion in ("early", "mid", "late", "attention"):
        model = emomucs(fusion)
        net = model.source_nets["drums"]
        sizes = [
            sum(p.numel() for p in m.parameters())
            for m in (net.feature_net, net.hidden_net, net.output_net)
        ]
        head = sum(p.numel() for p in model.head.parameters())
        trainable = sum(p.numel() for p in model.trainable_parameters())
        used = {"early": 1, "mid": 2, "late": 3, "attention": 2}[fusion]
        assert trainable == head + len(SOURCES) * sum(sizes[:used])
        total = sum(p.numel() for p in model.parameters())
        assert total == head + len(SOURCES) * sum(sizes)
        if fusion != "attention":
            assert model.head[1].in_features * model.head[1].out_features < head


def test_construction_is_deterministic_under_manual_seed():
    torch.manual_seed(7)
    a = emomucs("mid").state_dict()
    torch.manual_seed(7)
    b = emomucs("mid").state_dict()
    assert states_equal(a, b)
    # Each source network starts from its own random weights.
    assert not torch.equal(
        a["source_nets.drums.feature_net.0.weight"],
        a["source_nets.bass.feature_net.0.weight"],
    )
