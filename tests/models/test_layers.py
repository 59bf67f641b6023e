"""Block-stack discovery from the module tree, across encoder and decoder families."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedskip.errors import ModelError
from fedskip.models.layers import LayerStack, discover_layers, parameter_groups
from tests.models.tiny_models import build_tiny

# family, head kind, blocks_prefix, head_prefixes, final_norm_prefix, embedding_prefixes, other_prefixes
CASES = [
    ("bert", "token", "bert.encoder.layer", ["classifier."], None, ["bert.embeddings."], []),
    (
        "bert",
        "sequence",
        "bert.encoder.layer",
        ["classifier.", "bert.pooler."],
        None,
        ["bert.embeddings."],
        [],
    ),
    (
        "roberta",
        "token",
        "roberta.encoder.layer",
        ["classifier."],
        None,
        ["roberta.embeddings."],
        [],
    ),
    (
        "roberta",
        "sequence",
        "roberta.encoder.layer",
        ["classifier."],
        None,
        ["roberta.embeddings."],
        [],
    ),
    (
        "deberta-v2",
        "token",
        "deberta.encoder.layer",
        ["classifier."],
        None,
        ["deberta.embeddings.", "deberta.encoder.rel_embeddings."],
        ["deberta.encoder.LayerNorm."],
    ),
    (
        "deberta-v2",
        "sequence",
        "deberta.encoder.layer",
        ["pooler.", "classifier."],
        None,
        ["deberta.embeddings.", "deberta.encoder.rel_embeddings."],
        ["deberta.encoder.LayerNorm."],
    ),
    ("llama", "token", "model.layers", ["score."], "model.norm.", ["model.embed_tokens."], []),
    ("llama", "sequence", "model.layers", ["score."], "model.norm.", ["model.embed_tokens."], []),
    ("mistral", "token", "model.layers", ["score."], "model.norm.", ["model.embed_tokens."], []),
    ("qwen2", "sequence", "model.layers", ["score."], "model.norm.", ["model.embed_tokens."], []),
    ("gemma", "token", "model.layers", ["score."], "model.norm.", ["model.embed_tokens."], []),
]


@pytest.mark.parametrize(
    ("family", "kind", "blocks", "heads", "norm", "embeddings", "others"), CASES
)
def test_discovery_table(family, kind, blocks, heads, norm, embeddings, others) -> None:
    model = build_tiny(family, kind)
    stack = discover_layers(model)
    assert stack.blocks_prefix == blocks
    assert stack.num_blocks == 3
    assert stack.block_prefixes == [f"{blocks}.{i}." for i in range(3)]
    assert stack.head_prefixes == heads
    assert stack.final_norm_prefix == norm
    assert stack.embedding_prefixes == embeddings
    assert stack.other_prefixes == others


@pytest.mark.parametrize("family", ["bert", "deberta-v2", "llama", "gemma"])
def test_groups_partition_every_parameter(family: str) -> None:
    model = build_tiny(family, "sequence")
    stack = discover_layers(model)
    groups = parameter_groups(model, stack)
    assert sum(groups.values()) == sum(p.numel() for p in model.parameters())
    blocks = [groups[f"block_{i}"] for i in range(3)]
    assert len(set(blocks)) == 1 and blocks[0] > 0
    assert groups["head"] > 0 and groups["embedding"] > 0


def test_llama_groups_exact() -> None:
    model = build_tiny("llama", "token")
    groups = parameter_groups(model, discover_layers(model))
    # block: q,o 32x32; k,v 32x16; gate,up 32x64, down 64x32; two RMSNorms of 32
    block = 2 * 32 * 32 + 2 * 32 * 16 + 3 * 32 * 64 + 2 * 32
    assert groups == {
        "block_0": block,
        "block_1": block,
        "block_2": block,
        "head": 32 * 3 + 3,
        "final_norm": 32,
        "embedding": 100 * 32,
        "other": 0,
    }


def test_block_of_does_not_confuse_1_and_10() -> None:
    stack = LayerStack("model.layers", 12, [f"model.layers.{i}." for i in range(12)], [], None, [])
    assert stack.block_of("model.layers.10.mlp.up_proj.weight") == 10
    assert stack.block_of("model.layers.1.mlp.up_proj.weight") == 1
    assert stack.block_of("model.layers_extra.1.weight") is None
    assert stack.block_of("model.norm.weight") is None


def test_largest_same_class_list_wins_on_a_plain_module() -> None:
    class Block(nn.Module):
        def __init__(self, width: int) -> None:
            super().__init__()
            self.ff = nn.Linear(width, width)

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(10, 8)
            self.adapters = nn.ModuleList(
                [Block(2) for _ in range(5)]
            )  # more entries, fewer params
            self.blocks = nn.ModuleList([Block(8) for _ in range(3)])
            self.norm = nn.LayerNorm(8)
            self.head = nn.Linear(8, 2)

    stack = discover_layers(Model())
    assert (stack.blocks_prefix, stack.num_blocks) == ("blocks", 3)
    # without a base model every other top-level module with weights is task head
    assert stack.head_prefixes == ["adapters.", "head."]
    assert stack.final_norm_prefix == "norm."
    assert stack.embedding_prefixes == ["embed."]
    assert stack.other_prefixes == []


def test_unsupported_model_names_what_was_found() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    with pytest.raises(
        ModelError, match=r"cannot find a stack .*top-level modules: 0 \(Linear\), 1 \(ReLU\)"
    ):
        discover_layers(model)


def test_mixed_class_list_is_not_a_block_stack() -> None:
    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.parts = nn.ModuleList([nn.Linear(4, 4), nn.Conv1d(4, 4, 1)])

    with pytest.raises(ModelError, match=r"parts \(ModuleList\)"):
        discover_layers(Model())


def test_discovery_on_meta_device_is_free() -> None:
    with torch.device("meta"):
        model = build_tiny("qwen2", "token")
    stack = discover_layers(model)
    assert stack.num_blocks == 3 and stack.final_norm_prefix == "model.norm."
