"""Discover the stack of transformer blocks from a model's own module structure.

No per-checkpoint name lists: the block stack is the ``nn.ModuleList`` holding the most
parameters whose children are all of one class (``bert.encoder.layer``, ``model.layers``, ...).
Everything else is classified relative to it:

- task head: top-level children outside the base model that hold parameters (``classifier``,
  ``score``, DeBERTa's ``pooler``), plus a ``pooler`` inside the base model (BERT sequence
  classification); for a plain ``nn.Module`` without a base model, every top-level module
  with weights that is not blocks, embedding or final norm;
- final norm (decoders): a normalisation module next to the block list, when the list sits
  directly in the base model (``model.norm``) or the norm's name says ``final``/``ln_f``;
- embeddings: every ``nn.Embedding`` outside the blocks, grouped by its ``*embed*`` parent
  (``bert.embeddings.``) when it has one;
- other: anything left (e.g. DeBERTa's relative-position ``encoder.LayerNorm``); always frozen.

Prefixes end with ``.`` so ``name.startswith(prefix)`` never confuses block 1 with block 10.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from torch import nn

from fedskip.errors import ModelError

_FINAL_NORM_NAMES = ("norm", "ln_f", "final_layer_norm", "final_norm", "final_layernorm")


@dataclass(frozen=True)
class LayerStack:
    """Where a model's parameters live, as parameter-name prefixes (each ending with '.')."""

    blocks_prefix: str
    """Module path of the block list, e.g. ``bert.encoder.layer`` or ``model.layers``."""
    num_blocks: int
    block_prefixes: list[str]
    """Parameter-name prefix of block i, e.g. ``bert.encoder.layer.3.``."""
    head_prefixes: list[str]
    final_norm_prefix: str | None
    embedding_prefixes: list[str]
    other_prefixes: list[str] = field(default_factory=list)
    """Parameters in none of the groups above (frozen by layer skipping)."""

    def block_of(self, param_name: str) -> int | None:
        """Index of the block owning ``param_name``, or None outside the blocks."""
        if not param_name.startswith(self.blocks_prefix + "."):
            return None
        rest = param_name[len(self.blocks_prefix) + 1 :]
        index = rest.split(".", 1)[0]
        return int(index) if index.isdigit() else None

    def is_head(self, param_name: str) -> bool:
        return any(param_name.startswith(p) for p in self.head_prefixes)

    def is_embedding(self, param_name: str) -> bool:
        return any(param_name.startswith(p) for p in self.embedding_prefixes)

    def is_final_norm(self, param_name: str) -> bool:
        return self.final_norm_prefix is not None and param_name.startswith(self.final_norm_prefix)


def _param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _find_block_list(model: nn.Module) -> tuple[str, nn.ModuleList] | None:
    """The ModuleList of same-class children holding the most parameters."""
    best: tuple[int, int, str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0 or not name:
            continue
        classes = {type(child) for child in module}
        if len(classes) != 1:
            continue
        params = _param_count(module)
        if params == 0:
            continue
        key = (params, len(module))
        if best is None or key > best[:2]:
            best = (params, len(module), name, module)
    return None if best is None else (best[2], best[3])


def _base_model_name(model: nn.Module) -> str:
    prefix = getattr(model, "base_model_prefix", "")
    return prefix if prefix and isinstance(getattr(model, prefix, None), nn.Module) else ""


def is_norm_module(module: nn.Module) -> bool:
    """A normalisation layer (LayerNorm, RMSNorm, ...), told by its class."""
    return isinstance(module, nn.LayerNorm) or "norm" in type(module).__name__.lower()


def _head_prefixes(
    model: nn.Module, base: str, blocks_prefix: str, final_norm: str | None
) -> list[str]:
    heads: list[str] = []
    for name, child in model.named_children():
        if name == base or blocks_prefix == name or blocks_prefix.startswith(name + "."):
            continue
        if final_norm == name + ".":
            continue
        if _param_count(child) > 0 and not isinstance(child, nn.Embedding):
            heads.append(name + ".")
    if base:
        pooler = getattr(getattr(model, base), "pooler", None)
        if isinstance(pooler, nn.Module) and _param_count(pooler) > 0:
            heads.append(f"{base}.pooler.")
    return heads


def _final_norm_prefix(model: nn.Module, base: str, blocks_prefix: str) -> str | None:
    parent_name, _, list_name = blocks_prefix.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    for name, child in parent.named_children():
        if name == list_name or not is_norm_module(child) or _param_count(child) == 0:
            continue
        if parent_name == base or name.lower() in _FINAL_NORM_NAMES or "final" in name.lower():
            return f"{parent_name}.{name}." if parent_name else f"{name}."
    return None


def _embedding_prefixes(model: nn.Module, blocks_prefix: str) -> list[str]:
    prefixes: list[str] = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Embedding) or name.startswith(blocks_prefix + "."):
            continue
        parent_name, _, _ = name.rpartition(".")
        parent_leaf = parent_name.rpartition(".")[2]
        prefix = f"{parent_name}." if "embed" in parent_leaf.lower() else f"{name}."
        if prefix not in prefixes and not any(prefix.startswith(p) for p in prefixes):
            prefixes.append(prefix)
    return prefixes


def _describe_top_level(model: nn.Module) -> str:
    parts = [f"{name} ({type(child).__name__})" for name, child in model.named_children()]
    return ", ".join(parts) if parts else "no submodules"


def discover_layers(model: nn.Module) -> LayerStack:
    """Find the transformer blocks, task head, final norm and embeddings of ``model``.

    Works for decoder families (llama, mistral, qwen2, gemma) and encoder families (bert,
    roberta, deberta) because it reads the module tree, not checkpoint names. Raises
    :class:`ModelError` (listing the top-level modules found) when there is no block list.
    """
    found = _find_block_list(model)
    if found is None:
        raise ModelError(
            f"cannot find a stack of transformer blocks (an nn.ModuleList of identical blocks) in "
            f"{type(model).__name__}; top-level modules: {_describe_top_level(model)}"
        )
    blocks_prefix, blocks = found
    base = _base_model_name(model)
    final_norm = _final_norm_prefix(model, base, blocks_prefix)
    stack = LayerStack(
        blocks_prefix=blocks_prefix,
        num_blocks=len(blocks),
        block_prefixes=[f"{blocks_prefix}.{i}." for i in range(len(blocks))],
        head_prefixes=_head_prefixes(model, base, blocks_prefix, final_norm),
        final_norm_prefix=final_norm,
        embedding_prefixes=_embedding_prefixes(model, blocks_prefix),
    )
    others = {_owner_prefix(n) for n, _ in model.named_parameters() if _group(stack, n) == "other"}
    return dataclasses.replace(stack, other_prefixes=sorted(others))


def _owner_prefix(param_name: str) -> str:
    return param_name.rpartition(".")[0] + "."


def _group(stack: LayerStack, name: str) -> str:
    if stack.block_of(name) is not None:
        return "block"
    if stack.is_head(name):
        return "head"
    if stack.is_final_norm(name):
        return "final_norm"
    if stack.is_embedding(name):
        return "embedding"
    return "other"


def parameter_groups(model: nn.Module, stack: LayerStack) -> dict[str, int]:
    """Parameter counts by group: ``block_<i>``, ``head``, ``final_norm``, ``embedding``, ``other``."""
    counts: dict[str, int] = {f"block_{i}": 0 for i in range(stack.num_blocks)}
    counts.update(head=0, final_norm=0, embedding=0, other=0)
    for name, param in model.named_parameters():
        group = _group(stack, name)
        key = f"block_{stack.block_of(name)}" if group == "block" else group
        counts[key] += param.numel()
    return counts
