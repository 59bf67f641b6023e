"""LoRA inside the selected blocks: low-rank adapters replace full training of those blocks.

Layer skipping trains (and exchanges) whole blocks; with LoRA of rank ``r`` only two small
matrices per linear layer of the selected blocks travel — ``A`` (``r x in``) and ``B``
(``out x r``) — plus the task head (and the final norm of decoders when the top block is
selected, as in layer skipping). Everything else, every original weight of the selected blocks
included, stays frozen and bit-identical.

Adapters are placed with peft, on an explicit list of full module names built from the
:class:`~fedskip.models.layers.LayerStack`, so no module outside the selected blocks can get an
adapter by a name collision. ``targets="auto"`` adapts every ``nn.Linear`` of a selected block:
attention q/k/v/o and the MLP's gate/up/down projections for llama / mistral / qwen2 / gemma,
``query``/``key``/``value``/``attention.output.dense``/``intermediate.dense``/``output.dense``
for BERT-style encoders. The head is a peft ``modules_to_save`` module, so its trained copy is
part of the adapter state and ``merge_and_unload`` yields a plain transformers model (what
:func:`fedskip.records.rundir.RunDir.save_model` exports).

Every ``A`` matrix is initialised from a generator seeded by ``(seed, module name)`` (peft's
Kaiming-uniform rule) and every ``B`` is zero, so all clients and the server start from the same
adapters and the adapted model initially equals the base model. With ``freeze_a`` the ``A``
matrices stay at that shared init and only ``B`` (and the head) is trained and exchanged.

``method=lora`` (FedAvg over adapters in every block) is the same function with
``selected = range(num_blocks)``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from fedskip.errors import ConfigError
from fedskip.models.freeze import validate_selected
from fedskip.models.layers import LayerStack

PEFT_PREFIX = "base_model.model."
"""Prefix peft puts in front of every parameter name of the wrapped model."""
ADAPTER_MARKERS = ("lora_A", "lora_B")
HEAD_MARKER = "modules_to_save"


def parse_targets(targets: str | Sequence[str]) -> list[str] | None:
    """``"auto"`` → None (every linear layer); ``"q_proj, v_proj"`` → ``["q_proj", "v_proj"]``."""
    if isinstance(targets, str):
        if targets.strip() in ("", "auto"):
            return None
        items = [t.strip() for t in targets.split(",")]
    else:
        items = [str(t).strip() for t in targets]
    items = [t.strip(".") for t in items if t.strip(".")]
    if not items:
        raise ConfigError(
            "config key 'lora-targets': give module names such as 'q_proj,v_proj' or 'auto'"
        )
    return items


def lora_target_modules(
    model: nn.Module,
    stack: LayerStack,
    selected: Sequence[int],
    targets: str | Sequence[str] = "auto",
) -> list[str]:
    """Full names of the linear modules inside ``selected`` blocks that get adapters.

    An explicit target matches a module whose name inside its block equals it or ends with
    ``"." + target`` (``query`` or ``attention.self.query``). A target that matches no linear
    layer of the selected blocks raises :class:`ConfigError` listing the candidates.
    """
    chosen = validate_selected(stack, selected)
    wanted = parse_targets(targets)
    found: list[str] = []
    used: set[str] = set()
    candidates: set[str] = set()
    for index in chosen:
        prefix = stack.block_prefixes[index]
        block = model.get_submodule(prefix.rstrip("."))
        for rel, module in block.named_modules():
            if not isinstance(module, nn.Linear) or not rel:
                continue
            candidates.add(rel)
            hits = [t for t in wanted or () if rel == t or rel.endswith("." + t)]
            if wanted is None or hits:
                found.append(prefix + rel)
                used.update(hits)
    unknown = [t for t in wanted or () if t not in used]
    if unknown or not found:
        names = ", ".join(sorted(candidates)) or "none"
        what = f"{unknown[0]!r} matches" if unknown else "the selected blocks hold"
        raise ConfigError(
            f"config key 'lora-targets': {what} no linear layer of blocks {chosen}; "
            f"linear layers there: {names}"
        )
    return found


def _module_seed(seed: int, name: str) -> int:
    digest = hashlib.sha256(f"fedskip-lora:{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def init_adapters(model: nn.Module, seed: int) -> None:
    """Re-initialise every LoRA ``A`` (Kaiming uniform, a=√5, as peft) from ``(seed, module
    name)`` and zero every ``B``: identical on every client whatever the global RNG state."""
    with torch.no_grad():
        for name, module in model.named_modules():
            lora_a = getattr(module, "lora_A", None)
            lora_b = getattr(module, "lora_B", None)
            if not isinstance(lora_a, nn.ModuleDict) or not isinstance(lora_b, nn.ModuleDict):
                continue
            for adapter, layer in lora_a.items():
                weight = layer.get_parameter("weight")
                gen = torch.Generator().manual_seed(_module_seed(seed, f"{name}.{adapter}"))
                fresh = torch.empty(weight.shape, dtype=torch.float32)
                nn.init.kaiming_uniform_(fresh, a=math.sqrt(5), generator=gen)
                weight.copy_(fresh.to(device=weight.device, dtype=weight.dtype))
                lora_b[adapter].get_parameter("weight").zero_()


def is_adapter(name: str) -> bool:
    return any(f".{m}." in name for m in ADAPTER_MARKERS)


def set_lora_trainable(
    model: nn.Module,
    stack: LayerStack,
    selected: Sequence[int],
    *,
    freeze_a: bool = False,
    train_final_norm: bool = True,
) -> list[str]:
    """(Re)apply the trainable flags of a peft-wrapped model: adapters (``B`` only with
    ``freeze_a``), the head copy, and the final norm when ``train_final_norm`` and the top block
    is selected. Everything else is frozen. Returns the sorted trainable names."""
    chosen = set(validate_selected(stack, selected))
    with_norm = train_final_norm and (stack.num_blocks - 1) in chosen
    names = []
    for name, param in model.named_parameters():
        plain = name[len(PEFT_PREFIX) :] if name.startswith(PEFT_PREFIX) else name
        train = (
            (is_adapter(name) and not (freeze_a and ".lora_A." in name))
            or f".{HEAD_MARKER}." in name
            or (with_norm and stack.is_final_norm(plain))
        )
        param.requires_grad_(train)
        if not train:
            param.grad = None
        else:
            names.append(name)
    return sorted(names)


def apply_lora_to_selected(
    model: nn.Module,
    stack: LayerStack,
    selected: Sequence[int],
    *,
    rank: int,
    alpha: float,
    targets: str | Sequence[str] = "auto",
    freeze_a: bool = False,
    train_final_norm: bool = True,
    seed: int = 0,
) -> tuple[Any, list[str]]:
    """Wrap ``model`` (discovered as ``stack``) with LoRA adapters of ``rank`` on the target
    linear layers of the ``selected`` blocks; returns ``(peft_model, trainable names)``.

    The returned names are what a client trains and exchanges: adapter matrices (``lora_B``
    only with ``freeze_a``), the head (peft ``modules_to_save`` copy) and, with
    ``train_final_norm`` and the top block selected, the final norm. ``alpha / rank`` scales the
    adapters' output. ``seed`` fixes the ``A`` init (see :func:`init_adapters`).
    """
    from peft import LoraConfig, get_peft_model

    if rank < 1:
        raise ConfigError(f"config key 'lora-rank': {rank} must be >= 1 for LoRA")
    if alpha <= 0:
        raise ConfigError(f"config key 'lora-alpha': {alpha} must be > 0")
    modules = lora_target_modules(model, stack, selected, targets)
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,  # type: ignore[arg-type]  # peft accepts floats
        target_modules=modules,
        modules_to_save=[p.rstrip(".") for p in stack.head_prefixes] or None,
        lora_dropout=0.0,
        bias="none",
    )
    wrapped = get_peft_model(model, config)
    init_adapters(wrapped, seed)
    names = set_lora_trainable(
        wrapped, stack, selected, freeze_a=freeze_a, train_final_norm=train_final_norm
    )
    return wrapped, names


def lora_parameter_count(
    model: nn.Module,
    stack: LayerStack,
    selected: Sequence[int],
    rank: int,
    *,
    targets: str | Sequence[str] = "auto",
    freeze_a: bool = False,
) -> int:
    """Adapter parameters :func:`apply_lora_to_selected` trains, computed without wrapping:
    ``rank * (in + out)`` per target linear layer (``rank * out`` with ``freeze_a``)."""
    total = 0
    for name in lora_target_modules(model, stack, selected, targets):
        module = model.get_submodule(name)
        assert isinstance(module, nn.Linear)
        total += rank * (module.out_features + (0 if freeze_a else module.in_features))
    return total
