"""score_layers: per-block gradient norms on a probe, checked against torch.autograd.grad,
with the model left exactly as it was found."""

from __future__ import annotations

import math

import pytest
import torch

from fedskip.models.freeze import apply_layer_skip
from fedskip.models.layers import discover_layers
from fedskip.selection import get_selector
from fedskip.selection.importance import score_layers

VOCAB = 50


def tiny_llama() -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForTokenClassification

    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=32,
        num_labels=3,
    )
    return LlamaForTokenClassification(config)


def probe(n: int = 2) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(7)
    return [
        {
            "input_ids": torch.randint(0, VOCAB, (2, 5), generator=g),
            "attention_mask": torch.ones(2, 5, dtype=torch.long),
            "labels": torch.randint(0, 3, (2, 5), generator=g),
        }
        for _ in range(n)
    ]


def reference_scores(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]]) -> list[float]:
    """Norm of the mean gradient per block, via torch.autograd.grad on a deep copy."""
    import copy

    clone = copy.deepcopy(model).eval()
    stack = discover_layers(clone)
    blocks = [[p for n, p in clone.named_parameters() if stack.block_of(n) == i] for i in range(3)]
    for p in clone.parameters():
        p.requires_grad_(True)
    flat = [p for group in blocks for p in group]
    total = [torch.zeros_like(p) for p in flat]
    for batch in batches:
        grads = torch.autograd.grad(clone(**batch).loss, flat)
        total = [t + g for t, g in zip(total, grads)]
    out, start = [], 0
    for group in blocks:
        part = total[start : start + len(group)]
        start += len(group)
        out.append(math.sqrt(sum(float((g / len(batches)).pow(2).sum()) for g in part)))
    return out


def test_scores_match_an_independent_computation() -> None:
    model = tiny_llama()
    batches = probe()
    scores = score_layers(model, discover_layers(model), batches)
    assert len(scores) == 3 and all(s > 0 for s in scores)
    assert scores == pytest.approx(reference_scores(model, batches), rel=1e-4)
    assert score_layers(model, discover_layers(model), batches) == scores  # deterministic
    best = max(range(3), key=lambda i: (scores[i], i))
    assert get_selector("importance").select(3, 1, scores=scores) == [best]


def test_model_is_left_as_found() -> None:
    model = tiny_llama()
    stack = discover_layers(model)
    apply_layer_skip(model, stack, [2])
    model.train()
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    marker = torch.full_like(model.score.bias, 3.0)
    model.score.bias.grad = marker
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    score_layers(model, stack, probe())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert model.training
    assert model.score.bias.grad is marker
    assert all(p.grad is None for n, p in model.named_parameters() if n != "score.bias")
    assert all(torch.equal(p, weights[n]) for n, p in model.named_parameters())


@pytest.mark.parametrize(
    ("batches", "match"),
    [
        ([], r"at least one probe batch"),
        ([{"input_ids": torch.zeros(1, 3, dtype=torch.long)}], r"'labels'"),
    ],
)
def test_bad_probe_restores_the_model(batches, match) -> None:
    model = tiny_llama()
    stack = discover_layers(model)
    apply_layer_skip(model, stack, [0])
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    with pytest.raises(ValueError, match=match):
        score_layers(model, stack, batches)
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert model.training
