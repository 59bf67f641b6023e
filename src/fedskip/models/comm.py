"""Communication arithmetic of layer skipping, computed on a meta-device model (no weights).

Per client and round the server sends the trainable parameters down and the client sends its
update up, so each direction carries ``trainable parameters x bytes per value`` (fp32 = 4,
bf16 = 2). Full fine-tuning (FedAvg) exchanges every parameter; the reduction is
``1 - ours / full``. With a LoRA rank r only adapters on the selected blocks' linear layers
travel (A: r x in, B: out x r per layer; B only with frozen A) plus the task head (and
the final norm with the top block). Counts use the same code that
freezes the real model (:func:`fedskip.models.freeze.apply_layer_skip`), so the report matches
what training exchanges. Protocol overhead (Flower's ArrayRecord framing) is not included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from fedskip.errors import ConfigError
from fedskip.models.freeze import apply_layer_skip, count_parameters
from fedskip.models.layers import LayerStack, discover_layers, parameter_groups

BYTES_PER_VALUE = {"fp32": 4, "bf16": 2}


def lora_parameters(
    model: nn.Module,
    stack: LayerStack,
    selected: Sequence[int],
    rank: int,
    *,
    freeze_a: bool = False,
) -> int:
    """LoRA adapter parameters for every ``nn.Linear`` (attention + MLP) in the selected blocks:
    ``rank * (in + out)`` each (``rank * out`` with frozen A); same code as the real wrapping."""
    from fedskip.models.lora import lora_parameter_count

    return lora_parameter_count(model, stack, selected, rank, freeze_a=freeze_a)


def _selected_blocks(
    stack: LayerStack, layers: int, strategy: str, layer_ids: Sequence[int], every: int
) -> tuple[list[int], str]:
    from fedskip.selection import get_selector

    selector = get_selector(strategy)
    note = ""
    if selector.needs_scores:
        # Scores need data; every block has the same size, so count the top-k blocks.
        note = f"{strategy}: blocks depend on data; counted as the top {layers} (same block sizes)"
        selector = get_selector("top")
    elif selector.dynamic:
        note = f"{strategy}: blocks change every round; round 1 shown (same count every round)"
    return selector.select(stack.num_blocks, layers, round=1, ids=layer_ids, every=every), note


def communication_report(
    model: nn.Module,
    *,
    layers: int,
    strategy: str = "top",
    dtype: str = "fp32",
    lora_rank: int = 0,
    lora_freeze_a: bool = False,
    layer_ids: Sequence[int] = (),
    every: int = 0,
    train_final_norm: bool = True,
) -> dict[str, Any]:
    """Parameter and byte counts for layer skipping ``layers`` blocks vs full fine-tuning.

    ``model`` is normally a meta-device model from :func:`fedskip.models.loading.build_meta_model`;
    its ``requires_grad`` flags are changed. Bytes are per client per round, each way.
    """
    if dtype not in BYTES_PER_VALUE:
        raise ConfigError(
            f"config key 'dtype': {dtype!r} is not one of {', '.join(BYTES_PER_VALUE)}"
        )
    if lora_rank < 0:
        raise ConfigError(f"config key 'lora-rank': {lora_rank} must be >= 0")
    stack = discover_layers(model)
    selected, note = _selected_blocks(stack, layers, strategy, layer_ids, every)
    groups = parameter_groups(model, stack)
    per_block = [groups[f"block_{i}"] for i in range(stack.num_blocks)]
    if lora_rank > 0:
        # LoRA trains adapters instead of the blocks: head + adapters (+ final norm with the
        # top block, as layer skipping and fedskip.models.lora.apply_lora_to_selected do).
        with_norm = train_final_norm and (stack.num_blocks - 1) in selected
        trainable = groups["head"] + (groups["final_norm"] if with_norm else 0)
        trainable += lora_parameters(model, stack, selected, lora_rank, freeze_a=lora_freeze_a)
    else:
        apply_layer_skip(model, stack, selected, train_final_norm=train_final_norm)
        trainable = count_parameters(model)[1]
    total = count_parameters(model)[0]
    width = BYTES_PER_VALUE[dtype]
    report: dict[str, Any] = {
        "model_class": type(model).__name__,
        "num_blocks": stack.num_blocks,
        "strategy": strategy,
        "selected_layers": selected,
        "dtype": dtype,
        "bytes_per_value": width,
        "lora_rank": lora_rank,
        "lora_freeze_a": lora_freeze_a,
        "total_params": total,
        "trainable_params": trainable,
        "full_params": total,
        "bytes_per_round_up": trainable * width,
        "bytes_per_round_down": trainable * width,
        "full_bytes_per_round_up": total * width,
        "full_bytes_per_round_down": total * width,
        "reduction": 1.0 - trainable / total,
        "block_params": per_block[0],
        "per_block_params": per_block,
        "embedding_params": groups["embedding"],
        "head_params": groups["head"],
        "final_norm_params": groups["final_norm"],
        "other_params": groups["other"],
    }
    if note:
        report["note"] = note
    return report


# --------------------------------------------------------------------------- the paper's table
WIRE_SCHEMES = ("fp32", "bf16", "int8")
"""Encodings of the reduction table: 4 and 2 bytes per value, and fedskip's int8 compression
(1 byte per value + one fp32 scale per block of 256 values of each tensor,
:mod:`fedskip.compression`)."""
TABLE_RANKS = (8, 16)
"""LoRA ranks of the reduction table (adapters inside the selected blocks)."""


def wire_bytes(sizes: Sequence[int], scheme: str) -> int:
    """Bytes of tensors with ``sizes`` values each, encoded with ``scheme`` (:data:`WIRE_SCHEMES`)."""
    if scheme == "int8":
        from fedskip.compression import DEFAULT_BLOCK_SIZE

        return sum(n + 4 * -(-n // DEFAULT_BLOCK_SIZE) for n in sizes)
    return sum(sizes) * {"fp32": 4, "bf16": 2}[scheme]


def reduction_table(
    model: nn.Module, *, ranks: Sequence[int] = TABLE_RANKS
) -> list[dict[str, Any]]:
    """One row per k = 1..L (top-k blocks, final norm with the top block, head): the parameters
    exchanged, their bytes per client per direction in each of :data:`WIRE_SCHEMES`, and the
    reduction against full FedAvg **in fp32** with the embeddings counted in the full model
    (``reduction``) and without them (``reduction_no_embeddings``: the full model minus the
    embedding matrix, which layer skipping never trains); LoRA rows per rank count adapters
    inside the selected blocks (+ head and final norm), reductions in the same precision.
    ``model``: a meta-device model (:func:`fedskip.models.loading.build_meta_model`)."""
    stack = discover_layers(model)
    rows: list[dict[str, Any]] = []
    for k in range(1, stack.num_blocks + 1):
        report = communication_report(model, layers=k)
        sizes = [p.numel() for p in model.parameters() if p.requires_grad]
        full = report["full_params"]
        bases = {"": 4 * full, "_no_embeddings": 4 * (full - report["embedding_params"])}
        row: dict[str, Any] = {"k": k, "params": report["trainable_params"]}
        for scheme in WIRE_SCHEMES:
            sent = wire_bytes(sizes, scheme)
            row[f"bytes_{scheme}"] = sent
            for suffix, base in bases.items():
                row[f"reduction{suffix}_{scheme}"] = 1.0 - sent / base
        for rank in ranks:
            lora = communication_report(model, layers=k, lora_rank=rank)["trainable_params"]
            row[f"lora{rank}_params"] = lora
            for suffix, base in bases.items():
                row[f"lora{rank}_reduction{suffix}"] = 1.0 - 4 * lora / base
        rows.append(row)
    return rows


def closest_k(rows: Sequence[Mapping[str, Any]], column: str, target: float = 0.70) -> int:
    """The k whose ``column`` (a reduction) is closest to ``target`` (ties: the smaller k)."""
    return int(min(rows, key=lambda r: (abs(r[column] - target), r["k"]))["k"])
