"""A client call copies only the tensors it writes; every frozen weight stays the base model's
own tensor, unchanged, and training on such a copy gives exactly what a full copy gives."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch

from fedskip.config import Config
from fedskip.federation.client import ClientData, ClientRuntime, evaluate_round, train_round
from fedskip.trainability import ModelBundle, trainable_names

VARIANTS = [{}, {"method": "lora", "lora_rank": 2}]


def _setup(make_cfg: Callable[..., Config], **changes: Any) -> tuple[ClientRuntime, ClientData]:
    runtime = ClientRuntime(make_cfg(**changes))
    prepared = runtime.prepared
    data = ClientData(
        0, prepared.client_names[0], prepared.client_train[0], prepared.client_test[0]
    )
    return runtime, data


def _tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _record_copies(
    monkeypatch: pytest.MonkeyPatch, runtime: ClientRuntime
) -> list[torch.nn.Module]:
    """Every model copy ``runtime.fresh`` hands out from now on, in order."""
    copies: list[torch.nn.Module] = []
    plain = runtime.fresh

    def fresh(written: Any = None) -> ModelBundle:
        bundle = plain(written)
        copies.append(bundle.model)
        return bundle

    monkeypatch.setattr(runtime, "fresh", fresh)
    return copies


def _full_copies(monkeypatch: pytest.MonkeyPatch, runtime: ClientRuntime) -> None:
    def fresh(written: Any = None) -> ModelBundle:
        return copy.deepcopy(runtime.base)

    monkeypatch.setattr(runtime, "fresh", fresh)


@pytest.mark.parametrize("changes", VARIANTS, ids=["layerskip", "lora"])
def test_training_copies_what_it_trains_and_shares_the_frozen_weights(
    make_cfg: Callable[..., Config], monkeypatch: pytest.MonkeyPatch, changes: dict[str, Any]
) -> None:
    runtime, data = _setup(make_cfg, **changes)
    before = _tensors(runtime.base.model)
    trained = trainable_names(runtime.base, runtime.cfg, [1])
    copies = _record_copies(monkeypatch, runtime)
    result = train_round(runtime, data, {n: before[n] for n in trained}, layers=[1], server_round=1)
    assert sorted(result.state) == trained
    base = dict(runtime.base.model.named_parameters())
    mine = dict(copies[0].named_parameters())
    assert mine.keys() == base.keys()
    assert {n for n in base if mine[n] is base[n]} == set(base) - set(trained)
    assert all(torch.equal(base[n], before[n]) for n in base)  # the base model is untouched
    assert any(not torch.equal(result.state[n], before[n]) for n in trained)  # it trained


@pytest.mark.parametrize("changes", VARIANTS, ids=["layerskip", "lora"])
def test_a_copy_sharing_frozen_weights_trains_and_scores_exactly_as_a_full_copy(
    make_cfg: Callable[..., Config], monkeypatch: pytest.MonkeyPatch, changes: dict[str, Any]
) -> None:
    runtime, data = _setup(make_cfg, **changes)
    trained = trainable_names(runtime.base, runtime.cfg, [1])
    start = {n: t for n, t in _tensors(runtime.base.model).items() if n in trained}

    def one_round() -> tuple[dict[str, torch.Tensor], dict[str, float], dict[str, float]]:
        result = train_round(runtime, data, start, layers=[1], server_round=2)
        scores = evaluate_round(runtime, data, result.state).metrics
        return result.state, result.metrics, scores

    shared_state, shared_metrics, shared_scores = one_round()
    _full_copies(monkeypatch, runtime)
    full_state, full_metrics, full_scores = one_round()
    assert shared_state.keys() == full_state.keys()
    assert all(torch.equal(shared_state[n], full_state[n]) for n in full_state)
    assert shared_metrics["train-loss"] == full_metrics["train-loss"]
    assert shared_scores == full_scores


def test_evaluation_shares_every_weight_it_does_not_load(
    make_cfg: Callable[..., Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, data = _setup(make_cfg)
    before = _tensors(runtime.base.model)
    sent = {
        n: t + 1.0
        for n, t in before.items()
        if n in trainable_names(runtime.base, runtime.cfg, [1])
    }
    copies = _record_copies(monkeypatch, runtime)
    evaluate_round(runtime, data, sent)
    base = dict(runtime.base.model.named_parameters())
    mine = dict(copies[0].named_parameters())
    assert {n for n in base if mine[n] is base[n]} == set(base) - set(sent)
    assert all(torch.equal(mine[n], sent[n]) for n in sent)
    assert all(torch.equal(base[n], before[n]) for n in base)
