"""The shared training loop on tiny random BERT models (hidden 16, 2 blocks, no dropout)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from fedskip import config as config_module
from fedskip.data.encode import collate, collate_cls
from fedskip.train import engine
from fedskip.train.engine import TrainSettings, predict, schedule, train, warmup_steps

NER_COLLATE = lambda feats: collate(feats, pad_token_id=0)  # noqa: E731
CLS_COLLATE = lambda feats: collate_cls(feats, pad_token_id=0)  # noqa: E731
FAST = TrainSettings(lr=1e-2, warmup_ratio=0.0, batch_size=4, quiet=True, seed=3)


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_loss_decreases_and_counts(tiny_bert: Any, token_features: Any) -> None:
    model = tiny_bert("token", 3)
    feats = token_features(10)
    losses: list[float] = []
    result = train(
        model,
        feats,
        NER_COLLATE,
        FAST,
        epochs=8,
        device="cpu",
        on_epoch_end=lambda epoch, loss: losses.append(loss),
    )
    assert len(losses) == 8
    assert losses[-1] < 0.5 * losses[0]
    assert result.num_examples == 10  # examples, not batches, not x epochs
    assert result.steps == math.ceil(10 / 4) * 8
    assert result.loss == pytest.approx(sum(losses) / 8)  # equal examples per epoch


def test_steps_with_accumulation(tiny_bert: Any, token_features: Any) -> None:
    settings = TrainSettings(batch_size=2, grad_accum=3, quiet=True)
    result = train(
        tiny_bert("token", 3), token_features(9), NER_COLLATE, settings, epochs=2, device="cpu"
    )
    # 5 micro-batches per epoch -> steps after micro-batches 3 and 5 (the epoch's last)
    assert result.steps == 4
    assert result.num_examples == 9


def test_frozen_parameters_untouched_and_not_in_optimizer(
    tiny_bert: Any, token_features: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tiny_bert("token", 3)
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith(("bert.encoder.layer.1.", "classifier."))
    before = _state(model)
    created: list[torch.optim.Optimizer] = []

    class Recording(torch.optim.AdamW):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            created.append(self)

    monkeypatch.setattr(torch.optim, "AdamW", Recording)
    train(model, token_features(8), NER_COLLATE, FAST, epochs=2, device="cpu")
    after = _state(model)
    optimised = {id(p) for group in created[0].param_groups for p in group["params"]}
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert id(param) in optimised
            assert not torch.equal(before[name], after[name]), name
        else:
            assert id(param) not in optimised
            assert torch.equal(before[name], after[name]), name
    assert all(id(p) in optimised for p in created[0].state)  # no state for frozen weights


def test_weight_decay_and_head_lr_groups(tiny_bert: Any) -> None:
    model = tiny_bert("token", 3)
    settings = TrainSettings(lr=1e-4, head_lr=1e-2, weight_decay=0.1)
    named = [(n, p) for n, p in model.named_parameters()]
    groups = engine._param_groups(model, named, settings)
    by_id = {id(p): g for g in groups for p in g["params"]}
    params = dict(model.named_parameters())
    assert by_id[id(params["classifier.weight"])]["lr"] == 1e-2
    assert by_id[id(params["classifier.weight"])]["weight_decay"] == 0.1
    assert by_id[id(params["classifier.bias"])]["weight_decay"] == 0.0
    ln = params["bert.encoder.layer.0.output.LayerNorm.weight"]
    assert by_id[id(ln)] == {**by_id[id(ln)], "lr": 1e-4, "weight_decay": 0.0}
    assert sum(len(g["params"]) for g in groups) == len(named)


def test_gradient_accumulation_matches_larger_batch(tiny_bert: Any, sequence_features: Any) -> None:
    feats = sequence_features(8)
    big = tiny_bert("sequence", 2, seed=5)
    small = tiny_bert("sequence", 2, seed=5)
    base = dict(lr=1e-3, warmup_ratio=0.0, grad_clip=1.0, seed=7, quiet=True)
    train(big, feats, CLS_COLLATE, TrainSettings(batch_size=4, **base), epochs=2, device="cpu")
    train(
        small,
        feats,
        CLS_COLLATE,
        TrainSettings(batch_size=2, grad_accum=2, **base),
        epochs=2,
        device="cpu",
    )
    for (name, a), (_, b) in zip(big.named_parameters(), small.named_parameters()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0, msg=name)


def test_prox_term_value() -> None:
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    ref = torch.tensor([0.0, 4.0])
    # mu/2 * ((1-0)^2 + (2-4)^2) = 0.5 * 0.5 * 5
    assert engine._prox_term([(w, ref)], 0.5).item() == pytest.approx(1.25)


def test_proximal_term_keeps_weights_near_reference(tiny_bert: Any, token_features: Any) -> None:
    feats = token_features(8)

    def drift(mu: float) -> float:
        model = tiny_bert("token", 3)
        ref = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        train(
            model,
            feats,
            NER_COLLATE,
            FAST,
            epochs=3,
            device="cpu",
            prox_reference=ref,
            proximal_mu=mu,
        )
        return sum(float((p.detach() - ref[n]).pow(2).sum()) for n, p in model.named_parameters())

    assert drift(50.0) < 0.5 * drift(0.0)


def test_prox_reference_must_cover_trainable(tiny_bert: Any, token_features: Any) -> None:
    with pytest.raises(ValueError, match="lacks trainable"):
        train(
            tiny_bert("token", 3),
            token_features(2),
            NER_COLLATE,
            FAST,
            epochs=1,
            device="cpu",
            prox_reference={"x": torch.zeros(1)},
            proximal_mu=0.1,
        )


class CountingPrivacy:
    """Implements the engine's privacy hook: records calls, checks clipping is left to it."""

    def __init__(self) -> None:
        self.attached = 0
        self.steps = 0

    def attach(self, model: Any, optimizer: Any, data_loader: Any) -> Any:
        self.attached += 1
        assert model.training
        return model, optimizer, data_loader

    def after_step(self) -> None:
        self.steps += 1

    def detach(self, model: Any) -> None:
        self.detached = model


def test_privacy_hook_called_and_clipping_skipped(
    tiny_bert: Any, token_features: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clipped: list[float] = []
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda p, c: clipped.append(c))
    hook = CountingPrivacy()
    model = tiny_bert("token", 3)
    result = train(
        model,
        token_features(8),
        NER_COLLATE,
        FAST,
        epochs=2,
        device="cpu",
        privacy=hook,
    )
    assert hook.attached == 1
    assert hook.steps == result.steps == 4
    assert hook.detached is model  # training ends with the hook's state off the model
    assert clipped == []
    train(tiny_bert("token", 3), token_features(8), NER_COLLATE, FAST, epochs=1, device="cpu")
    assert clipped == [1.0, 1.0]


def test_multi_label_trains_with_bce(tiny_bert: Any) -> None:
    model = tiny_bert("sequence", 3, multi_label=True)
    g = torch.Generator().manual_seed(4)
    feats = []
    for _ in range(12):
        ids = torch.randint(1, 7, (5,), generator=g).tolist()
        feats.append(
            {
                "input_ids": ids,
                "attention_mask": [1] * 5,
                "labels": [float(k in ids) for k in (1, 2, 3)],
            }
        )
    losses: list[float] = []
    train(
        model,
        feats,
        CLS_COLLATE,
        FAST,
        epochs=6,
        device="cpu",
        on_epoch_end=lambda e, loss: losses.append(loss),
    )
    assert losses[0] == pytest.approx(math.log(2), abs=0.1)  # BCE of a near-uniform start
    assert losses[-1] < losses[0]


def test_empty_training_set(tiny_bert: Any) -> None:
    result = train(tiny_bert("token", 3), [], NER_COLLATE, FAST, epochs=1, device="cpu")
    assert (result.num_examples, result.steps, result.loss) == (0, 0, 0.0)


def test_predict_trims_padding_and_restores_mode(tiny_bert: Any, token_features: Any) -> None:
    model = tiny_bert("token", 3)
    feats = token_features(3, length=6)
    feats[1] = {k: v[:4] for k, v in feats[1].items()}
    model.train()
    out = predict(model, feats, NER_COLLATE, batch_size=2, device="cpu")
    assert [o.shape for o in out] == [(6, 3), (4, 3), (6, 3)]
    assert model.training
    model.eval()
    alone = model(input_ids=torch.tensor([feats[1]["input_ids"]])).logits[0].detach().numpy()
    np.testing.assert_allclose(out[1], alone, atol=1e-5)
    first = model(input_ids=torch.tensor([feats[0]["input_ids"]])).logits[0].detach().numpy()
    np.testing.assert_allclose(out[0], first, atol=1e-5)  # input order kept (batched by length)
    seq = tiny_bert("sequence", 2)
    out2 = predict(
        seq,
        [{"input_ids": [3, 4], "attention_mask": [1, 1], "labels": 0}],
        CLS_COLLATE,
        batch_size=4,
        device="cpu",
    )
    assert out2[0].shape == (2,)


def test_settings_from_config() -> None:
    from fedskip.config import Config

    cfg = Config(lr=1e-3, head_lr=2e-3, batch_size=8, grad_accum=2, seed=9, quiet=True)
    s = TrainSettings.from_config(cfg)
    assert (s.lr, s.head_lr, s.batch_size, s.grad_accum, s.seed, s.quiet) == (
        1e-3,
        2e-3,
        8,
        2,
        9,
        True,
    )
    assert (s.weight_decay, s.warmup_ratio, s.grad_clip) == (0.01, 0.1, 1.0)
    assert s.lr_schedule == "run"
    assert TrainSettings.from_config(Config(lr_schedule="epoch")).lr_schedule == "epoch"


def _stepped_lrs(kind: str, per_epoch: int, epochs: int) -> list[float]:
    """The learning rate each optimizer step uses under :func:`engine.schedule` (peak 1.0,
    warmup ratio 0.2), moving the restart origin as :func:`train` does."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler, restarts = engine.schedule(optimizer, 0.2, per_epoch, epochs, kind)
    used, steps = [], 0
    for _ in range(epochs):
        if restarts is not None:
            restarts.origin = steps
        for _ in range(per_epoch):
            used.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
            steps += 1
    return used


def test_epoch_schedule_restarts_the_warmup_and_decay_every_epoch() -> None:
    one_epoch = [0.0, 1.0, 0.75, 0.5, 0.25]  # warmup ceil(0.2 * 5) = 1 step, decay to 0 at 5
    assert _stepped_lrs("run", 5, 1) == pytest.approx(one_epoch)
    assert _stepped_lrs("epoch", 5, 1) == pytest.approx(one_epoch)
    assert _stepped_lrs("epoch", 5, 3) == pytest.approx(one_epoch * 3)
    # "run" spreads one warmup (2 steps) and one decay over both epochs instead
    assert _stepped_lrs("run", 5, 2) == pytest.approx(
        [0, 0.5, 1, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8]
    )
    with pytest.raises(ValueError, match="run, epoch"):
        engine.schedule(
            torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), 0.1, 5, 1, "cosine"
        )
    assert engine.LR_SCHEDULES == config_module.LR_SCHEDULES


def test_train_with_epoch_schedule_repeats_one_epochs_rates(
    tiny_bert: Any, token_features: Any
) -> None:
    seen: list[float] = []

    def record(optimizer: torch.optim.Optimizer, *_: Any) -> None:
        seen.append(optimizer.param_groups[0]["lr"])

    settings = TrainSettings(
        lr=1e-3, warmup_ratio=0.5, batch_size=4, quiet=True, lr_schedule="epoch"
    )
    handle = register_optimizer_step_pre_hook(record)
    try:  # 10 examples, batch 4: 3 steps per epoch, warmup ceil(1.5) = 2 steps
        train(
            tiny_bert("token", 3), token_features(10), NER_COLLATE, settings, epochs=2, device="cpu"
        )
    finally:
        handle.remove()
    assert seen == pytest.approx([0.0, 5e-4, 1e-3] * 2)


@pytest.mark.parametrize("kind", ["run", "epoch"])
def test_a_one_step_schedule_trains_at_the_full_rate(kind: str) -> None:
    """One optimizer step (e.g. a DP-SGD epoch of one noised step): no warmup step at rate 0
    (it trained nothing while charging ε); two or more steps keep their warmup."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler, _ = schedule(optimizer, 0.1, 1, 1, kind)
    assert optimizer.param_groups[0]["lr"] == 1.0
    assert warmup_steps(0.1, 1) == 0 and warmup_steps(0.1, 2) == 1 and warmup_steps(0.1, 30) == 3
    del scheduler


@pytest.mark.filterwarnings("ignore::fedskip.privacy.checks.PrivacyWarning")
def test_a_dp_epoch_of_one_step_changes_the_weights() -> None:
    """Every unit in the one Poisson draw of the epoch (q = 1): the one noised step trains."""
    from fedskip.privacy.dpsgd import DPSGD, DPSGDSettings
    from tests.privacy.privacy_helpers import collate, tiny_bert, token_features

    model = tiny_bert()
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    dp = DPSGD(DPSGDSettings(noise_multiplier=0.0, clip_norm=1.0))
    settings = TrainSettings(batch_size=8, lr=1e-2, quiet=True, grad_clip=0.0)
    result = train(model, token_features(8), collate, settings, epochs=1, device="cpu", privacy=dp)
    assert result.steps == 1 and dp.accountant.steps == 1
    assert all(not torch.equal(p, before[n]) for n, p in model.named_parameters() if n in before)
