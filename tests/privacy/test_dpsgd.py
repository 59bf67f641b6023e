"""DP-SGD through the training engine: real noise, exact non-private limit, accounting, budget."""

from __future__ import annotations

import math
import warnings
from typing import Any

import pytest
import torch

from fedskip.errors import ConfigError, ModelError, PrivacyBudgetExceeded
from fedskip.privacy.accounting import PrivacyAccountant, epsilon_for, noise_multiplier_for
from fedskip.privacy.checks import PrivacyWarning
from fedskip.privacy.dpsgd import DPSGD, DPSGDSettings, per_example_mean_loss
from fedskip.train.engine import TrainSettings, train
from tests.privacy.privacy_helpers import (
    collate,
    frozen_state,
    tiny_bert,
    tiny_llama,
    token_features,
    train_only,
    trainable_state,
)

DELTA = 1e-5


def _settings(**kw: Any) -> TrainSettings:
    return TrainSettings(**{"batch_size": 8, "lr": 1e-2, "quiet": True, "grad_clip": 0.0, **kw})


def _dp(**kw: Any) -> DPSGD:
    return DPSGD(DPSGDSettings(**{"noise_seed": 7, **kw}))


def _sgd_step(model: Any, dp: DPSGD, feats: list[dict[str, list[int]]], batch: int) -> None:
    """One DP-SGD step with plain SGD (lr 1): the weight change is minus the private gradient."""
    params = [p for p in model.parameters() if p.requires_grad]
    loader = torch.utils.data.DataLoader(feats, batch_size=batch, collate_fn=collate)  # type: ignore[arg-type]
    model, optimizer, private = dp.attach(model, torch.optim.SGD(params, lr=1.0), loader)
    batch_ = next(iter(private))
    model(**batch_).loss.backward()
    optimizer.step()
    dp.after_step()


@pytest.mark.filterwarnings("ignore::fedskip.privacy.checks.PrivacyWarning")
def test_noise_has_the_configured_variance() -> None:
    """Δw(σ) − Δw(σ=0) on the same Poisson batch is the Gaussian noise / expected batch size;
    its per-coordinate variance is (σ·C / B)²."""
    sigma, clip, batch, samples = 2.0, 0.5, 8, []
    for rep in range(4):
        deltas = []
        for noise in (sigma, 0.0):
            model = tiny_bert()
            before = trainable_state(model)
            dp = DPSGD(DPSGDSettings(noise_multiplier=noise, clip_norm=clip, noise_seed=rep))
            _sgd_step(model, dp, token_features(40), batch)
            after = trainable_state(model)
            deltas.append(torch.cat([(after[k] - before[k]).flatten() for k in before]))
        samples.append(deltas[0] - deltas[1])
    noise = torch.cat(samples).double() * batch  # back to the scale of the summed gradient
    assert noise.numel() > 8000
    assert noise.mean().item() == pytest.approx(
        0.0, abs=4 * sigma * clip / math.sqrt(noise.numel())
    )
    assert noise.var().item() == pytest.approx((sigma * clip) ** 2, rel=0.05)


def test_without_noise_and_clipping_equals_non_private_training() -> None:
    """σ = 0 and a huge clip norm at sample rate 1 (every example in every Poisson batch):
    DP-SGD reduces to full-batch training on the same per-example mean loss."""
    feats = token_features(12)  # equal lengths: HF's token-mean loss = mean of per-example means
    plain, private = tiny_bert(), tiny_bert()
    train(plain, feats, collate, _settings(batch_size=12), epochs=3, device="cpu")
    with pytest.warns(PrivacyWarning, match="not noised"):
        dp = _dp(noise_multiplier=0.0, clip_norm=1e6)
    train(private, feats, collate, _settings(batch_size=12), epochs=3, device="cpu", privacy=dp)
    a, b = trainable_state(plain), trainable_state(private)
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    assert dp.accountant.history == [(0.0, 1.0, 3)]
    assert dp.epsilon() == math.inf


@pytest.mark.parametrize("mode", ["hooks", "functorch"])
def test_dpsgd_on_bert_with_frozen_blocks(mode: str) -> None:
    model = tiny_bert()
    frozen, start = frozen_state(model), trainable_state(model)
    dp = _dp(noise_multiplier=1.0, clip_norm=1.0, grad_sample_mode=mode)
    result = train(
        model, token_features(40), collate, _settings(), epochs=2, device="cpu", privacy=dp
    )
    assert result.steps == 10  # q = 8/40 = 0.2 → int(1/q) = 5 Poisson batches per epoch
    assert dp.accountant.history == [(1.0, 0.2, 10)]
    assert dp.epsilon() == epsilon_for(noise_multiplier=1.0, sample_rate=0.2, steps=10, delta=DELTA)
    assert all(torch.equal(p, frozen[n]) for n, p in frozen_state(model).items())
    assert all(not torch.equal(p, start[n]) for n, p in trainable_state(model).items())


@pytest.mark.parametrize("mode", ["hooks", "functorch"])
def test_dpsgd_on_llama_with_frozen_blocks(mode: str) -> None:
    """LlamaRMSNorm (functorch), grouped-query attention with rotary embeddings, score head."""
    model = tiny_llama()
    frozen = frozen_state(model)
    dp = _dp(noise_multiplier=1.0, clip_norm=1.0, grad_sample_mode=mode)
    result = train(
        model, token_features(40), collate, _settings(), epochs=1, device="cpu", privacy=dp
    )
    assert result.steps == 5 and dp.accountant.steps == 5
    assert all(torch.equal(p, frozen[n]) for n, p in frozen_state(model).items())


def test_dpsgd_on_the_llama_tiny_preset() -> None:
    from transformers import LlamaForTokenClassification

    from fedskip.models.presets import llama_tiny_config

    config = llama_tiny_config()
    config.num_labels, config.classifier_dropout = 3, 0.0
    torch.manual_seed(0)
    model = LlamaForTokenClassification(config)
    train_only(model, ("model.layers.3.", "model.norm.", "score."))
    dp = _dp(noise_multiplier=1.0, clip_norm=1.0)
    train(model, token_features(16), collate, _settings(), epochs=1, device="cpu", privacy=dp)
    assert dp.accountant.history == [(1.0, 0.5, 2)]


def _lora_bert() -> Any:
    from peft import LoraConfig, get_peft_model

    model = tiny_bert()
    train_only(model, ())
    config = LoraConfig(
        r=2,
        target_modules=["query", "value"],
        layers_to_transform=[2],
        modules_to_save=["classifier"],
    )
    return get_peft_model(model, config)


def _full_bert() -> Any:
    """Every parameter trainable (FedAvg / k = all blocks), embeddings included: BERT feeds its
    position table one ``[1, T]`` row for the whole batch."""
    model = tiny_bert()
    for p in model.parameters():
        p.requires_grad_(True)
    return model


@pytest.mark.filterwarnings("ignore::fedskip.privacy.checks.PrivacyWarning")
@pytest.mark.parametrize(
    "make", [tiny_llama, _lora_bert, _full_bert], ids=["llama", "lora", "full-bert"]
)
def test_per_example_gradients_match_single_example_backward(make: Any) -> None:
    """Per-example gradients under Opacus equal each example's own gradient (LLaMA with frozen
    lower blocks; LoRA adapters in a selected BERT block): the loss of one example does not
    depend on the others in its batch."""
    feats = token_features(4)
    feats[1]["labels"][3:] = [-100] * 3  # a shorter example
    model, reference = make(), make()
    dp = _dp(noise_multiplier=0.0, clip_norm=1e6, grad_sample_mode="hooks")
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0)
    loader = torch.utils.data.DataLoader(feats, batch_size=4, collate_fn=collate)  # type: ignore[arg-type]
    dp.attach(model, opt, loader)
    model(**collate(feats)).loss.backward()
    for i in range(4):
        reference.zero_grad()
        one = collate(feats[i : i + 1])
        per_example_mean_loss(reference(**one).logits, one["labels"]).backward()
        for (name, p), (_, ref) in zip(model.named_parameters(), reference.named_parameters()):
            if p.requires_grad:
                assert torch.allclose(p.grad_sample[i], ref.grad, atol=1e-6), name
    dp.detach(model)
    assert not hasattr(model, "_fedskip_dp_hooks")


@pytest.mark.parametrize("mode", ["hooks", "functorch"])
def test_dpsgd_full_fine_tuning_of_bert(mode: str) -> None:
    """Full fine-tuning under DP-SGD trains the embedding tables too (was: Opacus failed to stack
    the position table's batch-of-one gradient); training ends by removing the input-expanding
    hooks (and every other DP hook)."""
    model = _full_bert()
    start = trainable_state(model)
    dp = _dp(noise_multiplier=1.0, clip_norm=1.0, grad_sample_mode=mode)
    train(model, token_features(40), collate, _settings(), epochs=1, device="cpu", privacy=dp)
    after = trainable_state(model)
    assert dp.accountant.steps == 5
    assert not torch.equal(
        after["bert.embeddings.position_embeddings.weight"],
        start["bert.embeddings.position_embeddings.weight"],
    )
    position_table = model.bert.embeddings.position_embeddings
    assert not position_table._forward_pre_hooks and not model._forward_pre_hooks
    assert not hasattr(model, "_fedskip_dp_hooks")
    assert all("forward" not in vars(m) for m in model.modules())  # no taped Linear left


def test_per_example_mean_loss_by_hand() -> None:
    logits = torch.zeros(2, 3, 2)
    logits[0, :, 1] = math.log(3.0)  # p(label 1) = 3/4 on every token of example 0
    labels = torch.tensor([[1, 1, -100], [0, -100, -100]])
    expected = (-math.log(0.75) + math.log(2.0)) / 2  # example 0: -log(3/4); example 1: log 2
    assert per_example_mean_loss(logits, labels).item() == pytest.approx(expected)


def test_empty_poisson_batches_are_noised_steps() -> None:
    """Batch size 1 over 40 examples: q = 1/40, so many of the 40 draws are empty; each one is
    still a noised (and accounted) step."""
    model = tiny_bert()
    dp = _dp(noise_multiplier=1.0, clip_norm=1.0)
    result = train(
        model,
        token_features(40),
        collate,
        _settings(batch_size=1),
        epochs=1,
        device="cpu",
        privacy=dp,
    )
    assert result.steps < 40  # the engine skipped the empty draws ...
    assert dp.accountant.history == [(1.0, 0.025, 40)]  # ... but all 40 releases are composed


def _crowded_warnings(run: Any) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run()
    return [str(w.message) for w in caught if "privacy units" in str(w.message)]


def test_a_step_that_samples_half_the_site_warns_once_per_site() -> None:
    """12 units, batch 4 x grad-accum 2: q = 1/3, so a step samples each unit at rate 2/3 and an
    epoch has 2 steps. One warning with those numbers, not repeated in the next round."""
    with pytest.warns(PrivacyWarning, match="grad-accum=2"):
        dp = _dp(noise_multiplier=1.0, grad_accum=2)
    model = tiny_bert()

    def two_rounds() -> None:
        for _ in range(2):
            train(
                model,
                token_features(12),
                collate,
                _settings(batch_size=4, grad_accum=2),
                epochs=1,
                device="cpu",
                privacy=dp,
            )

    assert _crowded_warnings(two_rounds) == [
        "DP-SGD: this site has 12 privacy units (examples) and a step expects batch-size × "
        "grad-accum = 8 of them: each step samples every example with probability up to 0.67, "
        "so an epoch has 2 noised step(s), sampling amplifies almost nothing and the noise swamps so "
        "few units. Use batch-size × grad-accum of at most 3 (a quarter of the site's examples) "
        "or more examples per site"
    ]


def test_a_step_below_half_the_site_does_not_warn() -> None:
    """40 units at batch 8: rate 0.2 per step, 5 steps per epoch."""
    dp = _dp(noise_multiplier=1.0)
    model = tiny_bert()

    def one_round() -> None:
        train(model, token_features(40), collate, _settings(), epochs=1, device="cpu", privacy=dp)

    assert _crowded_warnings(one_round) == []


def test_target_epsilon_plans_noise_persists_and_stops_before_the_budget() -> None:
    feats, target, rounds = token_features(40), 2.0, 2
    settings = DPSGDSettings(target_epsilon=target, planned_epochs=rounds, noise_seed=3)
    expected_sigma = noise_multiplier_for(
        target_epsilon=target, delta=DELTA, sample_rate=0.2, steps=10
    )
    model, state = tiny_bert(), None
    for _ in range(rounds):  # a fresh DPSGD each round, resumed from the saved state
        dp = DPSGD(settings)
        if state is not None:
            dp.load_state_dict(state)
        dp.check_round(len(feats), 8, epochs=1)
        train(model, feats, collate, _settings(), epochs=1, device="cpu", privacy=dp)
        state = dp.state_dict()
    assert dp.noise_multiplier == expected_sigma
    assert dp.accountant.history == [(expected_sigma, 0.2, 10)]
    assert target - 0.01 <= dp.epsilon() <= target
    dp = DPSGD(settings)
    dp.load_state_dict(state)
    with pytest.raises(PrivacyBudgetExceeded, match="this round would raise ε"):
        dp.check_round(len(feats), 8, epochs=1)
    before = trainable_state(model)
    with pytest.raises(PrivacyBudgetExceeded, match="the next step would raise ε"):
        train(model, feats, collate, _settings(), epochs=1, device="cpu", privacy=dp)
    assert all(torch.equal(p, before[n]) for n, p in trainable_state(model).items())
    assert dp.accountant.steps == 10


def test_accountant_passed_in_keeps_composing() -> None:
    accountant = PrivacyAccountant()
    model = tiny_bert()
    for _ in range(2):
        dp = DPSGD(DPSGDSettings(noise_multiplier=1.0, noise_seed=1), accountant=accountant)
        train(model, token_features(40), collate, _settings(), epochs=1, device="cpu", privacy=dp)
    assert accountant.history == [(1.0, 0.2, 10)]


def test_trainable_module_with_buffers_is_refused() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    loader = torch.utils.data.DataLoader([torch.zeros(4)] * 4, batch_size=2)
    with pytest.raises(ModelError, match=r"1 \(BatchNorm1d\)"):
        _dp().attach(model, torch.optim.SGD(model.parameters(), lr=0.1), loader)


def test_unsupported_grad_sample_mode() -> None:
    with pytest.raises(ConfigError, match="'ew' is not one of fast, hooks, functorch"):
        DPSGDSettings(grad_sample_mode="ew")


@pytest.mark.parametrize("field, value", [("clip_norm", 0.0), ("delta", 0.0), ("delta", 1.0)])
def test_bad_settings(field: str, value: float) -> None:
    """Settings built in code are checked too (a user's config is refused before, with the
    key: tests/test_config_rules.py)."""
    with pytest.raises(ValueError, match=f"{field}={value}"):
        DPSGDSettings(**{field: value})


def test_steps_lost_with_the_node_state_are_restored() -> None:
    """A client the server knows to have composed 10 steps, whose own accountant is empty
    (fresh node), composes them before training, with the σ it planned then."""
    feats = token_features(40)
    settings = DPSGDSettings(target_epsilon=2.0, planned_epochs=3, round_epochs=1, noise_seed=4)
    dp = DPSGD(settings, known_steps=10)
    with pytest.warns(PrivacyWarning, match="composing the missing 10 steps"):
        train(tiny_bert(), feats, collate, _settings(), epochs=1, device="cpu", privacy=dp)
    sigma = noise_multiplier_for(target_epsilon=2.0, delta=DELTA, sample_rate=0.2, steps=15)
    assert dp.accountant.history == [(sigma, 0.2, 15)]
    with pytest.raises(PrivacyBudgetExceeded, match="this round"), pytest.warns(PrivacyWarning):
        DPSGD(settings, known_steps=15).check_round(40, 8, epochs=1)


def test_local_runs_get_dpsgd_with_dp_sample_only() -> None:
    from fedskip.config import Config
    from fedskip.privacy.dpsgd import local_dpsgd

    assert local_dpsgd(Config(method="centralized")) is None
    dp = local_dpsgd(Config(method="centralized", dp="sample", epochs=4))
    assert dp is not None and dp.settings.planned_epochs == 4 and dp.settings.round_epochs == 4
    with pytest.raises(ConfigError, match="'dp': client-level DP"):  # no local_dpsgd to call
        Config(method="local", dp="client")
