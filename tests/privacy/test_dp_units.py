"""Unit-level DP-SGD: all examples of one patient / note are one DP sample (sampling, clipping,
accounting), in micro-batches that do not change the maths."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

from fedskip.errors import ConfigError, DataError
from fedskip.privacy.dpsgd import DPSGD, DPSGDSettings, per_example_mean_loss
from fedskip.privacy.units import resolve_unit, units_for
from fedskip.train.engine import TrainSettings, train
from tests.privacy.privacy_helpers import collate, tiny_bert, tiny_llama, token_features, train_only

DELTA = 1e-5


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


def _trainable(model: Any) -> list[tuple[str, torch.nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def _one_step(
    model: Any,
    feats: list[dict[str, list[int]]],
    units: list[int],
    *,
    batch: int,
    clip: float,
    grad_accum: int = 1,
    mode: str = "hooks",
) -> tuple[Any, DPSGD, int]:
    """One unit-level DP-SGD step (σ = 0, SGD lr 0) driven by hand through the private loader;
    returns the optimizer right after its step (per-unit rows in ``p.grad_sample`` with
    ``mode`` hooks), the hook and the number of micro-batches the step took."""
    settings = DPSGDSettings(
        noise_multiplier=0.0,
        clip_norm=clip,
        noise_seed=0,
        grad_accum=grad_accum,
        grad_sample_mode=mode,
    )
    dp = DPSGD(settings)
    dp.use_units("note", units)
    opt = torch.optim.SGD([p for _, p in _trainable(model)], lr=0.0)
    loader = torch.utils.data.DataLoader(feats, batch_size=batch, collate_fn=collate)  # type: ignore[arg-type]
    model, private_opt, private = dp.attach(model, opt, loader)
    micro = 0
    for mb in private:
        model(**mb).loss.backward()
        micro += 1
        if mb.ends_step:
            private_opt.step()
            break
    return private_opt, dp, micro


@pytest.mark.filterwarnings("ignore::fedskip.privacy.checks.PrivacyWarning")
@pytest.mark.parametrize(
    "make", [tiny_bert, tiny_llama, _lora_bert], ids=["bert-frozen", "llama-frozen", "bert-lora"]
)
def test_unit_gradient_is_the_sum_of_its_examples_gradients(make: Any) -> None:
    """Two notes of 3 and 2 examples, micro-batches of 2 (a note spans micro-batches), q = 1:
    each unit's row equals the sum of its examples' single-example gradients."""
    feats = token_features(5)
    feats[1]["labels"][3:] = [-100] * 3  # a shorter example
    units = [0, 0, 0, 1, 1]
    model, reference = make(), make()
    opt, dp, micro = _one_step(model, feats, units, batch=2, clip=1e6)
    assert micro == 3  # notes span micro-batches [0, 1], [2, 3], [4]
    assert dp.num_units == 2 and dp.accountant.history == [(0.0, 1.0, 1)]
    expected: dict[str, list[torch.Tensor]] = {n: [0 * p, 0 * p] for n, p in _trainable(reference)}
    for i, unit in enumerate(units):
        reference.zero_grad()
        one = collate(feats[i : i + 1])
        per_example_mean_loss(reference(**one).logits, one["labels"]).backward()
        for name, p in _trainable(reference):
            expected[name][unit] = expected[name][unit] + p.grad
    for name, p in _trainable(model):
        rows = p.grad_sample
        assert rows.shape[0] == 2, name
        for unit in range(2):
            assert torch.allclose(rows[unit], expected[name][unit], atol=1e-5), name
    dp.detach(model)


def _clipped_sum(
    feats: list[dict[str, list[int]]], units: list[int], clip: float, mode: str
) -> torch.Tensor:
    batch = len(set(units))
    opt, _, _ = _one_step(tiny_bert(), feats, units, batch=batch, clip=clip, mode=mode)
    return torch.cat([p.summed_grad.flatten() for p in opt.params])


@pytest.mark.parametrize("mode", ["hooks", "fast"])
def test_adding_or_removing_one_unit_moves_the_clipped_sum_by_at_most_clip_norm(
    mode: str,
) -> None:
    """Neighbouring datasets differ by one whole note (3 examples): with notes as units the
    clipped sum moves by ≤ C (exactly C here: the note's gradient is longer than C); with
    examples as units the same note (three copies of one sentence) moves it by 3·C."""
    clip = 0.05
    feats, units = token_features(7), [0, 0, 0, 1, 1, 2, 2]
    feats[1], feats[2] = dict(feats[0]), dict(feats[0])
    without = [f for f, u in zip(feats, units) if u != 0]
    full = _clipped_sum(feats, units, clip, mode)
    neighbour = _clipped_sum(without, [u - 1 for u in units if u != 0], clip, mode)
    assert (full - neighbour).norm().item() == pytest.approx(clip, rel=1e-4)
    per_example = _clipped_sum(feats, list(range(7)), clip, mode)
    per_example_neighbour = _clipped_sum(without, list(range(4)), clip, mode)
    assert (per_example - per_example_neighbour).norm().item() == pytest.approx(3 * clip, rel=1e-4)


@pytest.mark.filterwarnings("ignore::fedskip.privacy.checks.PrivacyWarning")
@pytest.mark.parametrize("mode", ["hooks", "fast"])
def test_a_unit_drawn_in_two_draws_of_one_accumulated_step_is_one_dp_sample(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """grad-accum=2 and every unit drawn in both Poisson draws of the step: each unit has one
    gradient row (the sum over both draws) before clipping, so removing a unit moves the
    step's clipped sum by ≤ C — exactly C here, not the 2·C of two separately clipped rows."""
    from fedskip.privacy.unit_batches import UnitBatches

    monkeypatch.setattr(UnitBatches, "_draw", lambda self: list(range(self.num_units)))
    monkeypatch.setattr(UnitBatches, "__len__", lambda self: 2)  # one step of two draws
    clip = 0.05
    feats, units = token_features(8), [0, 0, 1, 1, 2, 2, 3, 3]

    def step(feats: list[dict[str, list[int]]], units: list[int]) -> tuple[Any, torch.Tensor]:
        opt, dp, _ = _one_step(
            tiny_bert(), feats, units, batch=2, clip=clip, grad_accum=2, mode=mode
        )
        assert dp.accountant.history == [(0.0, 1.0, 1)]  # one release at 2·q
        return opt, torch.cat([p.summed_grad.flatten() for p in opt.params])

    opt, full = step(feats, units)
    for p in opt.params if mode == "hooks" else ():  # a row per unit, then Opacus' k = 2 part
        assert [part.shape[0] for part in p.grad_sample] == [4, 0]
    _, neighbour = step(feats[2:], [u - 1 for u in units[2:]])
    assert (full - neighbour).norm().item() == pytest.approx(clip, rel=1e-4)


def _settings(**kw: Any) -> TrainSettings:
    return TrainSettings(**{"batch_size": 2, "lr": 1e-2, "quiet": True, "grad_clip": 0.0, **kw})


def test_epsilon_is_opacus_rdp_at_the_unit_level_sample_rate() -> None:
    """40 examples in 10 notes, 2 expected notes per step: q = 2/10 (not 2/40), 5 steps per
    epoch; ε is Opacus' RDP accountant for (σ = 1, q = 0.2, 10 steps)."""
    from opacus.accountants import RDPAccountant

    dp = DPSGD(DPSGDSettings(noise_multiplier=1.0, clip_norm=1.0, noise_seed=5))
    dp.use_units("note", [i // 4 for i in range(40)])
    result = train(
        tiny_bert(), token_features(40), collate, _settings(), epochs=2, device="cpu", privacy=dp
    )
    assert result.steps <= 10 and dp.accountant.history == [(1.0, 0.2, 10)]
    opacus = RDPAccountant()
    opacus.history = [(1.0, 0.2, 10)]
    assert dp.epsilon() == pytest.approx(opacus.get_epsilon(DELTA), rel=1e-12)
    assert dp.epsilon() == pytest.approx(5.7537, abs=1e-4)


@dataclass
class _Doc:
    doc_id: str
    patient_id: str | None = None
    site: str | None = "site-a"
    meta: dict[str, str] = field(default_factory=dict)


def test_a_note_with_many_sentences_counts_once_in_q() -> None:
    docs = [_Doc("long")] + [_Doc(f"short-{i}") for i in range(9)]
    example_docs = [0] * 31 + list(range(1, 10))  # 31 sentence windows of one note, then 9 notes
    unit, units = units_for("note", docs, example_docs)
    assert unit == "note" and units == [0] * 31 + list(range(1, 10))
    dp = DPSGD(DPSGDSettings(noise_multiplier=1.0, noise_seed=2))
    dp.use_units(unit, units)
    train(tiny_bert(), token_features(40), collate, _settings(), epochs=1, device="cpu", privacy=dp)
    assert dp.num_units == 10 and dp.accountant.history == [(1.0, 0.2, 5)]


def test_patients_group_their_notes_and_auto_resolves() -> None:
    docs = [_Doc("a", "p1"), _Doc("b", "p2"), _Doc("c", "p1")]
    assert units_for("patient", docs, [0, 0, 1, 2, 2]) == ("patient", [0, 0, 1, 0, 0])
    assert units_for("auto", docs, [0, 1, 2]) == ("patient", [0, 1, 0])
    assert units_for("example", docs, [0, 0, 1]) == ("example", [0, 1, 2])
    docs.append(_Doc("d"))
    assert units_for("auto", docs, [0, 1, 2, 3]) == ("note", [0, 1, 2, 3])
    assert units_for("auto", docs, [0, 1, 2]) == ("patient", [0, 1, 0])  # d gave no example


def test_epsilon_per_patient_exceeds_epsilon_per_example() -> None:
    """Same σ, batch size and data: 40 examples of 8 patients give q = 2/8 instead of 2/40."""
    eps = {}
    for unit, units in (("example", list(range(40))), ("patient", [i % 8 for i in range(40)])):
        dp = DPSGD(DPSGDSettings(noise_multiplier=1.0, noise_seed=3))
        dp.use_units(unit, units)
        train(
            tiny_bert(),
            token_features(40),
            collate,
            _settings(),
            epochs=1,
            device="cpu",
            privacy=dp,
        )
        eps[unit] = dp.epsilon()
    assert dp.accountant.history == [(1.0, 0.25, 4)]
    assert eps["patient"] > eps["example"] > 0


def test_patient_unit_without_patient_ids_names_the_file_and_the_fix() -> None:
    docs = [_Doc("a", "p1"), _Doc("note-7", meta={"file": "/data/site-a/note-7.txt"})]
    with pytest.raises(DataError) as info:
        resolve_unit("patient", docs)
    message = str(info.value)
    assert "1 of 2 training notes carry no patient id" in message
    assert "note 'note-7' from /data/site-a/note-7.txt" in message
    assert "patients.csv with columns record,patient" in message and "dp-unit=note" in message
    assert "\n" not in message


def test_unknown_dp_unit_is_a_config_error() -> None:
    from fedskip.config import Config

    with pytest.raises(ConfigError, match="config key 'dp-unit': 'visit' is not one of auto"):
        Config.from_mapping({"dp-unit": "visit"})
    with pytest.raises(ConfigError, match="'dp-unit'"):
        DPSGDSettings(unit="visit")
    assert DPSGDSettings.from_config(Config.from_mapping({"dp-unit": "note"})).unit == "note"


def test_unknown_dp_unit_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from fedskip.cli import main

    code = main(["run", "--set", "dp=sample", "--set", "dp-unit=visit"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "'dp-unit': 'visit'" in err
