import pytest
import torch
from torch import nn

from emomucs.training.loop import (
    NonFiniteLossError,
    TrainOptions,
    batches,
    mean_squared_error,
    predict,
    resolve_device,
    train_model,
)


def _bias_model() -> nn.Module:
    """Predicts w·1 + b per output, starting at 0: its path is easy to foresee."""
    model = nn.Linear(1, 2)
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    return model


def _data(target: float, n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.ones(n, 1), torch.full((n, 2), target)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_restores_the_best_weights_when_validation_loss_turns_up():
    # Outputs climb from 0 towards 1; the validation target 0.3 is passed mid-way.
    model = _bias_model()
    options = TrainOptions(max_epochs=200, patience=5, batch_size=4, progress=False)
    result = train_model(model, _data(1.0), _data(0.3), options)
    losses = [row["val_loss"] for row in result.history]
    assert 3 < result.best_epoch < len(losses)
    assert len(losses) == result.best_epoch + options.patience
    assert losses[result.best_epoch - 1] == min(losses) == result.best_loss
    assert losses[-1] > result.best_loss
    assert _same(model.state_dict(), result.state)
    x_val, y_val = _data(0.3)
    assert mean_squared_error(model, x_val, y_val, 32) == pytest.approx(
        result.best_loss
    )


def test_keeps_epoch_one_when_it_is_the_best():
    # Training pulls outputs up, validation wants them down: epoch 1 is best.
    options = TrainOptions(max_epochs=50, patience=3, progress=False)
    model = _bias_model()
    result = train_model(model, _data(1.0), _data(-1.0), options)
    assert result.best_epoch == 1
    assert len(result.history) == 4
    once = _bias_model()
    train_model(
        once, _data(1.0), _data(-1.0), TrainOptions(max_epochs=1, progress=False)
    )
    assert _same(model.state_dict(), once.state_dict())
    assert not torch.equal(model.bias, torch.zeros(2))


def test_nan_loss_stops_with_the_run_named():
    x, y = _data(1.0)
    x[3] = float("nan")
    with pytest.raises(NonFiniteLossError, match="variant X, outer fold 2.*epoch 1"):
        train_model(
            _bias_model(),
            (x, y),
            _data(1.0),
            TrainOptions(progress=False),
            label="variant X, outer fold 2",
        )


def test_auto_device_trains_where_torch_can():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    model = _bias_model()
    options = TrainOptions(max_epochs=3, progress=False, device="auto")
    result = train_model(model, _data(1.0), _data(1.0), options)
    assert result.state["bias"].device.type == expected
    assert predict(model, torch.ones(3, 1), 2).device.type == "cpu"


def test_batches_cover_everything_without_a_batch_of_one():
    generator = torch.Generator().manual_seed(0)
    chunks = batches(9, 4, generator)
    assert [len(c) for c in chunks] == [4, 5]
    assert sorted(torch.cat(chunks).tolist()) == list(range(9))
    assert [len(c) for c in batches(8, 4, None)] == [4, 4]
    with pytest.raises(ValueError, match="training.patience"):
        TrainOptions(patience=0)


def test_train_loss_is_per_value_for_both_reductions():
    # lr 0: the weights stay at 0, so each epoch's loss is the targets' mean square.
    losses = {}
    for reduction in ("sum", "mean"):
        options = TrainOptions(
            learning_rate=0.0,
            max_epochs=1,
            batch_size=3,
            loss_reduction=reduction,
            progress=False,
        )
        result = train_model(_bias_model(), _data(0.5), _data(0.5), options)
        losses[reduction] = result.history[0]["train_loss"]
    assert losses["sum"] == pytest.approx(0.25)
    assert losses["mean"] == pytest.approx(0.25)


def test_weight_decay_pulls_weights_that_the_loss_does_not_need_to_zero():
    # Targets 0 and outputs 0 from the bias alone: only decay moves the weight.
    def trained(weight_decay: float) -> nn.Module:
        model = _bias_model()
        with torch.no_grad():
            model.weight.fill_(1.0)
        x, y = torch.zeros(8, 1), torch.zeros(8, 2)
        options = TrainOptions(
            learning_rate=0.1, max_epochs=5, patience=5,
            weight_decay=weight_decay, progress=False,
        )  # fmt: skip
        train_model(model, (x, y), (x, y), options)
        return model

    assert torch.equal(trained(0.0).weight, torch.ones(2, 1))
    decayed = trained(0.5).weight
    assert torch.all(decayed < 1.0) and torch.all(decayed > 0.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"weight_decay": -0.1}, "weight_decay"), ({"loss_reduction": "max"}, "'max'")],
)
def test_bad_weight_decay_or_reduction_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainOptions(**kwargs)


def test_one_device_resolver_and_one_list_of_fusion_and_strategy_names():
    """Training, separation and the experiment grid share one definition of each."""
    from emomucs import device
    from emomucs.models import fusion
    from emomucs.pipelines.experiments import variants
    from emomucs.separation import separate
    from emomucs.training import loop, spec

    assert loop.resolve_device is separate.resolve_device is device.resolve_device
    assert spec.FUSIONS == tuple(fusion.FUSIONS) and variants.FUSIONS is spec.FUSIONS
    assert variants.STRATEGIES is spec.STRATEGIES
