"""A client call drops its model copy without a full cycle collection unless something holds it."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import pytest
import torch

import fedskip.federation.client as client
from fedskip.config import Config
from fedskip.federation.client import (
    ClientData,
    ClientRuntime,
    evaluate_round,
    release,
    train_round,
)


class _Counter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, *args: Any) -> int:
        self.calls += 1
        return 0


def _setup(make_cfg: Callable[..., Config], **changes: Any) -> tuple[Any, ...]:
    cfg = make_cfg(**changes)
    runtime = ClientRuntime(cfg)
    prepared = runtime.prepared
    data = ClientData(
        0, prepared.client_names[0], prepared.client_train[0], prepared.client_test[0]
    )
    state = {k: p.detach().clone() for k, p in runtime.base.model.named_parameters()}
    return runtime, data, state


def _track_copies(monkeypatch: pytest.MonkeyPatch, runtime: ClientRuntime) -> list[Any]:
    copies: list[Any] = []
    plain = runtime.fresh

    def fresh(written: Any = None) -> Any:
        bundle = plain(written)
        copies.append(weakref.ref(bundle.model))
        return bundle

    monkeypatch.setattr(runtime, "fresh", fresh)
    return copies


def test_plain_calls_free_their_copy_without_collecting(
    make_cfg: Callable[..., Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, data, state = _setup(make_cfg)
    copies = _track_copies(monkeypatch, runtime)
    collect = _Counter()
    monkeypatch.setattr(client.gc, "collect", collect)
    result = train_round(runtime, data, state, layers=[1], server_round=1)
    evaluate_round(runtime, data, {**state, **result.state})
    assert len(copies) == 2 and all(ref() is None for ref in copies)
    assert collect.calls == 0
    assert result.state and all(isinstance(t, torch.Tensor) for t in result.state.values())


def test_a_copy_held_by_a_cycle_is_collected(monkeypatch: pytest.MonkeyPatch) -> None:
    model = torch.nn.Linear(2, 2)
    model.cycle = [model]  # type: ignore[assignment]  # a reference cycle keeps it alive
    ref = weakref.ref(model)
    del model
    assert ref() is not None
    assert release(ref) is True
    assert ref() is None
    assert release(ref) is False
