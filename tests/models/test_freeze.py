"""Layer skipping: analytic trainable counts, frozen weights untouched by training, backward
stops below the lowest trainable block, exchanged state round trips."""

from __future__ import annotations

import pytest
import torch

from fedskip.errors import ConfigError, ModelError
from fedskip.models.freeze import (
    apply_full_finetune,
    apply_layer_skip,
    count_parameters,
    load_trainable_state,
    trainable_state,
)
from fedskip.models.layers import discover_layers
from fedskip.models.loading import load_model
from tests.models.tiny_models import build_tiny, random_batch

LABELS = ["O", "B-PROBLEM", "I-PROBLEM"]
MINILM_BLOCK = 1_774_464
TINY_BLOCK = 36_992  # llama-tiny: 2*64*64 + 2*64*32 + 3*64*128 + 2*64
TINY_HEAD = 64 * 3 + 3
TINY_NORM = 64


@pytest.fixture
def llama_tiny() -> torch.nn.Module:
    return load_model("llama-tiny", task="ner", labels=LABELS)[0]


@pytest.mark.parametrize(
    ("selected", "final_norm", "expected"),
    [
        ([3], True, TINY_BLOCK + TINY_HEAD + TINY_NORM),
        ([3], False, TINY_BLOCK + TINY_HEAD),
        ([2, 3], True, 2 * TINY_BLOCK + TINY_HEAD + TINY_NORM),
        ([0, 1], True, 2 * TINY_BLOCK + TINY_HEAD),  # top block not selected: norm stays frozen
        ([0, 2], True, 2 * TINY_BLOCK + TINY_HEAD),
    ],
)
def test_llama_tiny_trainable_count_is_analytic(llama_tiny, selected, final_norm, expected) -> None:
    stack = discover_layers(llama_tiny)
    names = apply_layer_skip(llama_tiny, stack, selected, train_final_norm=final_norm)
    assert count_parameters(llama_tiny) == (
        4 * TINY_BLOCK + TINY_HEAD + TINY_NORM + 30522 * 64,
        expected,
    )
    assert names == sorted(n for n, p in llama_tiny.named_parameters() if p.requires_grad)
    assert ("model.norm.weight" in names) == (final_norm and 3 in selected)


def test_minilm_top_two_count() -> None:
    model, _ = load_model("minilm", task="ner", labels=LABELS)
    names = apply_layer_skip(model, discover_layers(model), [4, 5])
    assert count_parameters(model) == (22_566_531, 2 * MINILM_BLOCK + 384 * 3 + 3)
    assert names[0] == "bert.encoder.layer.4.attention.output.LayerNorm.bias"
    assert names[-2:] == ["classifier.bias", "classifier.weight"]


def test_training_changes_only_selected_blocks_and_head(llama_tiny) -> None:
    stack = discover_layers(llama_tiny)
    names = set(apply_layer_skip(llama_tiny, stack, [1, 3]))
    before = {n: p.detach().clone() for n, p in llama_tiny.named_parameters()}
    params = [p for p in llama_tiny.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    assert (
        sum(p.numel() for g in optimizer.param_groups for p in g["params"])
        == 2 * TINY_BLOCK + TINY_HEAD + TINY_NORM
    )
    for step in range(3):
        loss = llama_tiny(**random_batch(30522, seed=step)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    for name, param in llama_tiny.named_parameters():
        if name in names:
            assert not torch.equal(param, before[name]), f"{name} did not train"
        else:
            assert torch.equal(param, before[name]), f"frozen {name} changed"
            assert param.grad is None
    assert {stack.block_of(n) for n in names} == {1, 3, None}


def test_backward_stops_below_lowest_trainable_block(llama_tiny) -> None:
    stack = discover_layers(llama_tiny)
    apply_layer_skip(llama_tiny, stack, [2, 3])
    needs_grad: dict[int, bool] = {}
    hooks = [
        block.register_forward_hook(
            lambda _m, _i, out, i=i: needs_grad.__setitem__(
                i, (out[0] if isinstance(out, tuple) else out).requires_grad
            )
        )
        for i, block in enumerate(llama_tiny.model.layers)
    ]
    llama_tiny(**random_batch(30522)).loss.backward()
    for hook in hooks:
        hook.remove()
    # blocks 0-1 run without autograd graph: no backward there at all
    assert needs_grad == {0: False, 1: False, 2: True, 3: True}
    assert llama_tiny.model.embed_tokens.weight.grad is None


def test_tied_embedding_stays_frozen() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=32,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    stack = discover_layers(model)
    assert stack.head_prefixes == ["lm_head."]
    names = apply_layer_skip(model, stack, [1])
    assert not model.lm_head.weight.requires_grad
    assert not any(n.startswith(("lm_head.", "model.embed_tokens.")) for n in names)


def test_full_finetune_trains_everything(llama_tiny) -> None:
    stack = discover_layers(llama_tiny)
    apply_layer_skip(llama_tiny, stack, [3])
    names = apply_full_finetune(llama_tiny, stack)
    total, trainable = count_parameters(llama_tiny)
    assert total == trainable and len(names) == len(list(llama_tiny.parameters()))


@pytest.mark.parametrize(
    ("selected", "match"), [([4], r"\[4\] out of range 0\.\.3"), ([], r"at least one block")]
)
def test_bad_selection(llama_tiny, selected, match) -> None:
    with pytest.raises(ConfigError, match=match):
        apply_layer_skip(llama_tiny, discover_layers(llama_tiny), selected)


def test_trainable_state_is_detached_cpu_fp32() -> None:
    model = build_tiny("llama", "token").to(torch.bfloat16)
    names = apply_layer_skip(model, discover_layers(model), [2])
    state = trainable_state(model)
    assert sorted(state) == names
    assert {t.dtype for t in state.values()} == {torch.float32}
    assert {t.device.type for t in state.values()} == {"cpu"}
    assert not any(t.requires_grad for t in state.values())
    state["score.bias"].add_(1.0)
    assert not torch.equal(model.score.bias.float(), state["score.bias"])


def test_state_round_trip_between_clients() -> None:
    a, b = build_tiny("llama", "token", seed=0), build_tiny("llama", "token", seed=1)
    for model in (a, b):
        apply_layer_skip(model, discover_layers(model), [1, 2])
    loaded = load_trainable_state(b, trainable_state(a))
    assert loaded == sorted(trainable_state(a))
    for name, value in trainable_state(b).items():
        assert torch.equal(value, trainable_state(a)[name])
    assert not torch.equal(
        a.model.layers[0].mlp.up_proj.weight, b.model.layers[0].mlp.up_proj.weight
    )


def test_partial_state_with_relaxed_keys() -> None:
    model = build_tiny("llama", "token")
    apply_layer_skip(model, discover_layers(model), [2])
    update = {"model.layers.0.mlp.up_proj.weight": torch.ones(64, 32)}  # a frozen parameter
    assert load_trainable_state(model, update, strict_keys=False) == [
        "model.layers.0.mlp.up_proj.weight"
    ]
    assert model.model.layers[0].mlp.up_proj.weight.sum().item() == 64 * 32


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (
            lambda s: s.update({"nope.weight": torch.zeros(1)}),
            r"1 parameter\(s\) unknown to this model, e.g. nope.weight",
        ),
        (lambda s: s.pop("score.bias"), r"1 missing, 0 frozen, e.g. score.bias"),
        (
            lambda s: s.update({"model.layers.0.mlp.up_proj.weight": torch.zeros(64, 32)}),
            r"0 missing, 1 frozen",
        ),
        (
            lambda s: s.update({"score.bias": torch.zeros(4)}),
            r"score.bias has shape \(4,\), model expects \(3,\)",
        ),
    ],
)
def test_bad_updates(edit, match) -> None:
    model = build_tiny("llama", "token")
    apply_layer_skip(model, discover_layers(model), [2])
    state = trainable_state(model)
    edit(state)
    with pytest.raises(ModelError, match=match):
        load_trainable_state(model, state)
