"""dp-sample-grads=fast (ghost norms + book-keeping) against the reference (Opacus per-example
gradients summed per unit): the same clipped sum, so the same mechanism."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from fedskip.privacy.dpsgd import DPSGD, DPSGDSettings
from fedskip.privacy.ghost_norms import linear_unit_norms2
from fedskip.privacy.unit_batches import UnitBatches
from fedskip.train.engine import TrainSettings, train
from tests.privacy.privacy_helpers import collate, tiny_bert, tiny_llama, token_features, train_only

pytestmark = pytest.mark.filterwarnings("ignore::fedskip.privacy.checks.PrivacyWarning")


def _lora_bert(*, freeze_a: bool = False) -> Any:
    from peft import LoraConfig, get_peft_model

    model = tiny_bert()
    train_only(model, ())
    config = LoraConfig(
        r=2,
        target_modules=["query", "value", "dense"],
        layers_to_transform=[2],
        modules_to_save=["classifier"],
    )
    peft_model = get_peft_model(model, config)
    if freeze_a:
        for name, p in peft_model.named_parameters():
            if "lora_A" in name:
                p.requires_grad_(False)
    return peft_model


def _bert_block_only() -> Any:
    """The top block alone (head frozen): the Linear layers' ghost norms carry the unit norm
    (with the head trainable, the head's gradient dominates it)."""
    model = tiny_bert()
    train_only(model, ("bert.encoder.layer.2.",))
    return model


def _full_bert() -> Any:
    model = tiny_bert()
    for p in model.parameters():
        p.requires_grad_(True)
    return model


MODELS = {
    "bert-top-block": tiny_bert,
    "bert-block-no-head": _bert_block_only,
    "llama-top-block": tiny_llama,
    "bert-lora": _lora_bert,
    "bert-lora-frozen-a": lambda: _lora_bert(freeze_a=True),
    "bert-all-blocks": _full_bert,
}


def _features() -> list[dict[str, list[int]]]:
    """Nine examples of six tokens; two end in padding (masked, unlabelled)."""
    feats = token_features(9, seed=3)
    for i, pad in ((1, 2), (6, 4)):
        feats[i]["attention_mask"][-pad:] = [0] * pad
        feats[i]["labels"][-pad:] = [-100] * pad
        feats[i]["input_ids"][-pad:] = [0] * pad
    return feats


def _private_gradient(
    make: Any, mode: str, units: list[int], clip: float, grad_accum: int
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``p.grad`` after one DP step at σ = 0 drawing every unit (micro-batches of 2 examples,
    so units span micro-batches): the clipped sum over units / (expected units × draws); and
    each tensor's squared per-unit gradient norms before clipping."""
    model = make()
    dp = DPSGD(
        DPSGDSettings(
            noise_multiplier=0.0,
            clip_norm=clip,
            noise_seed=0,
            grad_accum=grad_accum,
            grad_sample_mode=mode,
        )
    )
    dp.use_units("note", units)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0)
    loader = torch.utils.data.DataLoader(_features(), batch_size=2, collate_fn=collate)  # type: ignore[arg-type]
    model, private_opt, private = dp.attach(model, opt, loader)
    for mb in private:
        model(**mb).loss.backward()
        if mb.ends_step:
            private_opt.step()
            break
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if mode == "fast":
        norms2 = {n: private_opt.tape.unit_norms2[p].float() for n, p in named}
    else:  # the reference keeps its per-unit rows in p.grad_sample (a list with grad-accum)
        rows = {n: p.grad_sample for n, p in named}
        rows = {n: torch.cat(r) if isinstance(r, list) else r for n, r in rows.items()}
        norms2 = {n: r.flatten(1).pow(2).sum(dim=1) for n, r in rows.items()}
    dp.detach(model)
    return {n: p.grad.clone() for n, p in named}, norms2


@pytest.mark.parametrize("grad_accum", [1, 2], ids=["one-draw", "two-draws"])
@pytest.mark.parametrize(
    "units",
    [list(range(9)), [0, 0, 0, 1, 1, 2, 3, 3, 3]],
    ids=["units-of-one", "units-of-several"],
)
@pytest.mark.parametrize("make", MODELS.values(), ids=MODELS.keys())
def test_fast_clipping_equals_the_per_example_reference(
    make: Any, units: list[int], grad_accum: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Noise pinned to zero, every unit drawn (in both draws with grad-accum 2: a unit counts
    once), a clip norm that clips every unit: the fast path's clipped sum equals Opacus'
    per-example gradients summed per unit and clipped, to 1e-5; so does every tensor's
    per-unit gradient norm (the ghost norms one by one, not only their total)."""
    monkeypatch.setattr(UnitBatches, "_draw", lambda self: list(range(self.num_units)))
    clip = 1e-3
    reference, reference_norms2 = _private_gradient(make, "hooks", units, clip, grad_accum)
    fast, fast_norms2 = _private_gradient(make, "fast", units, clip, grad_accum)
    _assert_equal_to_1e5(fast, reference)
    for name, norms2 in reference_norms2.items():  # each tensor's per-unit norms, one by one
        assert norms2.shape == (len(set(units)),)
        torch.testing.assert_close(fast_norms2[name], norms2, rtol=1e-5, atol=1e-12, msg=name)
    total = torch.cat([g.flatten() for g in fast.values()]).norm()
    assert 0 < total <= clip * len(set(units))  # each unit adds at most C (before the divisor)


def test_without_clipping_fast_equals_the_reference_on_llama() -> None:
    """A clip norm no unit reaches: both paths give the plain summed gradient."""
    units = [0, 0, 1, 2, 2, 2, 3, 4, 4]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(UnitBatches, "_draw", lambda self: list(range(self.num_units)))
        reference, _ = _private_gradient(tiny_llama, "hooks", units, 1e6, 1)
        fast, _ = _private_gradient(tiny_llama, "fast", units, 1e6, 1)
    _assert_equal_to_1e5(fast, reference)


def _assert_equal_to_1e5(fast: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> None:
    """Every coordinate within 1e-5 of the reference, relative to the reference's largest
    coordinate (the gradients are tiny at a small clip norm, so a plain atol would hide a
    wrong clip factor)."""
    assert fast.keys() == reference.keys()
    scale = max(float(g.abs().max()) for g in reference.values())
    assert scale > 0
    for name, grad in reference.items():
        torch.testing.assert_close(fast[name], grad, rtol=1e-5, atol=1e-5 * scale, msg=name)


@pytest.mark.parametrize(
    "pattern",
    [[2, 0, 2, 2, 1, 0, 2] * 3, [0, 0, 1, 1, 2, 2, 3, 3], [1, 1, 0, 0, 3, 3, 2, 2]],
    ids=["uneven-unsorted", "equal-sorted", "equal-unsorted"],
)
@pytest.mark.parametrize("shape", [(3, 5), (40, 3)], ids=["ghost", "materialised"])
def test_linear_unit_norms_by_hand(shape: tuple[int, int], pattern: list[int]) -> None:
    """‖Σ_{t∈u} g_t a_tᵀ‖² for units of uneven or equal token counts, tokens in unit order or
    not, by Gram matrices (few tokens, wide layer) and by materialising G_u (many tokens,
    narrow layer)."""
    d_in, d_out = shape
    g = torch.Generator().manual_seed(0)
    rows = torch.tensor(pattern)
    a = torch.randn(len(rows), d_in, generator=g)
    grads = torch.randn(len(rows), d_out, generator=g)
    expected = torch.stack(
        [(grads[rows == u].T @ a[rows == u]).pow(2).sum() for u in range(4)]
    )  # a unit without tokens (unit 3 of the first pattern) has norm 0
    torch.testing.assert_close(linear_unit_norms2(a, grads, rows, 4), expected)


def test_fast_path_trains_through_the_engine_with_the_same_accounting() -> None:
    """The engine's loop with the fast path: Poisson steps, accountant and weights change;
    the same (σ, q, steps) history as the reference path."""
    histories = []
    for mode in ("fast", "hooks"):
        model = tiny_bert()
        before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        dp = DPSGD(DPSGDSettings(noise_multiplier=1.0, clip_norm=1.0, grad_sample_mode=mode))
        settings = TrainSettings(batch_size=8, lr=1e-2, quiet=True, grad_clip=0.0)
        train(model, token_features(16), collate, settings, epochs=1, device="cpu", privacy=dp)
        moved = [not torch.equal(p, before[n]) for n, p in model.named_parameters() if n in before]
        assert all(moved)
        histories.append(dp.accountant.history)
    assert histories[0] == histories[1] == [(1.0, 0.5, 2)]


@pytest.mark.parametrize("mode", ["fast", "hooks"])
def test_step_report_says_signal_against_noise(mode: str) -> None:
    """σ·C·√d is the norm scale of the noise, the clipped sum is at most C per unit, and with a
    clip norm far below every unit's norm every unit is clipped."""
    model = tiny_bert()
    d = sum(p.numel() for p in model.parameters() if p.requires_grad)
    settings = DPSGDSettings(
        noise_multiplier=2.0, clip_norm=1e-4, grad_sample_mode=mode, step_report=True
    )
    dp = DPSGD(settings)
    train_settings = TrainSettings(batch_size=8, lr=1e-2, quiet=True, grad_clip=0.0)
    train(model, token_features(16), collate, train_settings, epochs=1, device="cpu", privacy=dp)
    report = dp.step_report()
    assert report["noise_norm"] == pytest.approx(2.0 * 1e-4 * d**0.5)
    assert 0 < report["signal_norm"] <= 1e-4 * 16
    assert report["clipped_share"] == 1.0 and report["unit_norm"] > 1e-4


def test_no_step_report_unless_asked() -> None:
    """dp-step-report off (the default): the per-step data statistics are not even computed."""
    dp = DPSGD(DPSGDSettings(noise_multiplier=1.0, clip_norm=1.0))
    settings = TrainSettings(batch_size=8, lr=1e-2, quiet=True, grad_clip=0.0)
    train(tiny_bert(), token_features(16), collate, settings, epochs=1, device="cpu", privacy=dp)
    assert dp.accountant.steps == 2 and dp.step_report() == {}
