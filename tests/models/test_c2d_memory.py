"""C2D's max-pool keeps only its argmax indices for the backward pass: the same
values and gradients as PyTorch's own, without holding the batch-norm's output."""

import pytest
import torch
from torch import nn

from emomucs.models import C2D
from emomucs.models.c2d import MaxPool2dKeepingIndices

N_MELS, N_FRAMES = 40, 131  # 131 frames: the time pools leave a remainder


def _with_pytorch_pools(model: C2D) -> C2D:
    twin = C2D(n_mels=N_MELS, n_frames=N_FRAMES, n_filters=8)
    twin.load_state_dict(model.state_dict())
    for i, layer in enumerate(twin.feature_net):
        if isinstance(layer, MaxPool2dKeepingIndices):
            twin.feature_net[i] = nn.MaxPool2d(layer.kernel_size)
    return twin


def _saved_bytes(model: nn.Module, x: torch.Tensor) -> int:
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(x)
    return sum(storages.values())


@pytest.mark.parametrize("deterministic", [False, True])
def test_same_values_and_gradients_as_pytorchs_max_pool(deterministic):
    torch.manual_seed(0)
    model = C2D(n_mels=N_MELS, n_frames=N_FRAMES, n_filters=8)
    twin = _with_pytorch_pools(model)
    assert any(isinstance(m, MaxPool2dKeepingIndices) for m in model.feature_net)
    x = torch.randn(5, N_MELS, N_FRAMES)
    model.train(), twin.train()
    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(deterministic)
    try:
        out, out_twin = model(x), twin(x)
        assert torch.equal(out, out_twin)
        out.square().sum().backward()
        out_twin.square().sum().backward()
    finally:
        torch.use_deterministic_algorithms(was)
    for (name, p), q in zip(model.named_parameters(), twin.parameters(), strict=True):
        assert torch.equal(p.grad, q.grad), name
        if p.ndim == 4:
            assert p.grad.is_contiguous(memory_format=torch.channels_last), name


def test_the_batch_norm_output_is_not_kept_for_the_backward_pass():
    torch.manual_seed(0)
    model = C2D(n_mels=N_MELS, n_frames=N_FRAMES, n_filters=8).train()
    twin = _with_pytorch_pools(model).train()
    x = torch.randn(4, N_MELS, N_FRAMES)
    first_feature_map = (
        4 * 8 * N_MELS * N_FRAMES * 4
    )  # tracks × filters × cells × bytes
    # the first block's feature map alone, the others come on top
    assert _saved_bytes(twin, x) - _saved_bytes(model, x) > first_feature_map


def test_inference_uses_pytorchs_own_pool():
    model = C2D(n_mels=N_MELS, n_frames=N_FRAMES, n_filters=8).eval()
    x = torch.randn(2, N_MELS, N_FRAMES)
    with torch.no_grad():
        out = model(x)
    assert out.grad_fn is None
    assert torch.equal(out, _with_pytorch_pools(model).eval()(x).detach())
