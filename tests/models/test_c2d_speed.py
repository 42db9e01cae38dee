"""C2D's fast layout: pool before ELU, channels-last weights; the same function as the
original's conv → BN → ELU → pool in the default (contiguous) layout."""

import copy

import torch
from torch import nn

from emomucs.models import C2D, EmoMucs
from emomucs.models.c2d import original_layout
from emomucs.training import TrainOptions, train_model

N_MELS, N_FRAMES = 40, 130


def test_pooling_before_the_elu_gives_the_same_values_and_gradients():
    torch.manual_seed(0)
    fast = C2D(n_mels=N_MELS, n_frames=N_FRAMES, n_filters=8)
    fast.to(memory_format=torch.contiguous_format)  # the order alone: exact
    slow = original_layout(fast)
    assert [type(m) for m in slow.feature_net[1:5]] == [
        nn.Conv2d,
        nn.BatchNorm2d,
        nn.ELU,
        nn.MaxPool2d,
    ]
    x = torch.randn(6, N_MELS, N_FRAMES)
    fast.train(), slow.train()
    out_fast, out_slow = fast(x), slow(x)
    assert torch.equal(out_fast, out_slow)
    out_fast.square().sum().backward()
    out_slow.square().sum().backward()
    for (name, p), q in zip(fast.named_parameters(), slow.parameters()):
        assert torch.equal(p.grad, q.grad), name


def test_weights_are_channels_last_and_stay_so_through_copies():
    model = C2D(n_mels=N_MELS, n_frames=N_FRAMES, n_filters=8)
    conv = model.feature_net[5].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert not conv.is_contiguous()
    other = C2D(n_mels=N_MELS, n_frames=N_FRAMES, n_filters=8)
    other.load_state_dict(copy.deepcopy(model.state_dict()))
    assert other.feature_net[5].weight.is_contiguous(memory_format=torch.channels_last)
    emomucs = EmoMucs(
        "C2D",
        {"n_mels": N_MELS, "n_frames": N_FRAMES, "n_filters": 8},
        ["drums", "bass"],
        "late",
    )
    for network in emomucs.source_nets.values():
        weight = network.feature_net[5].weight
        assert weight.is_contiguous(memory_format=torch.channels_last)


def test_channels_last_computes_the_same_function_to_float_tolerance():
    torch.manual_seed(2)
    fast = C2D(n_mels=N_MELS, n_frames=N_FRAMES, n_filters=8)
    slow = original_layout(fast)
    x = torch.randn(6, N_MELS, N_FRAMES)
    out_fast, out_slow = fast(x), slow(x)
    torch.testing.assert_close(out_fast, out_slow, rtol=1e-5, atol=1e-5)
    out_fast.square().sum().backward()
    out_slow.square().sum().backward()
    # A conv bias before batch-norm has a true gradient of 0, so its computed one
    # is rounding noise: compare every gradient on the scale of the largest.
    scale = max(float(q.grad.abs().max()) for q in slow.parameters())
    for (name, p), q in zip(fast.named_parameters(), slow.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=1e-5 * scale, msg=name)


def test_a_model_trained_channels_last_predicts_as_one_trained_contiguous():
    """The layout changes only the order of float sums. Adam turns a rounding-level
    gradient (the conv biases before batch-norm have a true gradient of 0) into a
    full step, so two trainings drift apart slowly, as with another thread count:
    after 8 steps the predictions differ by under 2 % of what training moved them."""
    torch.manual_seed(1)
    x = torch.randn(24, N_MELS, N_FRAMES)
    y = torch.tanh(x[:, :4].mean(dim=(1, 2))).unsqueeze(1).repeat(1, 2)
    fast = C2D(n_mels=N_MELS, n_frames=N_FRAMES, n_filters=8)
    slow = original_layout(fast)
    untrained = copy.deepcopy(slow).eval()
    options = TrainOptions(
        batch_size=8, max_epochs=4, patience=4, progress=False, learning_rate=1e-3
    )
    for model in (fast, slow):
        train_model(
            model,
            (x[:16], y[:16]),
            (x[16:], y[16:]),
            options,
            generator=torch.Generator().manual_seed(3),
        )
    fast.eval(), slow.eval()
    with torch.no_grad():
        moved = float((slow(x) - untrained(x)).abs().max())
        apart = float((fast(x) - slow(x)).abs().max())
    assert moved > 0.1
    assert apart < 0.02 * moved
    assert fast.feature_net[5].weight.is_contiguous(memory_format=torch.channels_last)
