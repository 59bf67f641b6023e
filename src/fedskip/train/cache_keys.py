"""Keys of the frozen-prefix activation cache (:mod:`fedskip.train.prefix_cache`): never stale.

The key (:func:`cache_key`) covers the model class and name, the block ``j`` whose inputs are
cached, a hash of every parameter and buffer the prefix depends on (anything outside blocks
``j..``, the head and the final norm), the tokenization settings and a fingerprint of the
examples' tokens. Rotating selection moving ``j``, an earlier round changing a lower block or
another tokenizer all give a new key, so the states are recomputed.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from fedskip.models.layers import LayerStack


def base_model_of(model: nn.Module) -> nn.Module:
    """The Hugging Face model under Opacus (``_module``) and peft (``get_base_model``) wrappers;
    its parameter names are those of :class:`LayerStack` (LoRA adds ``lora_*`` leaves only)."""
    while True:
        inner = getattr(model, "_module", None)
        if isinstance(inner, nn.Module):
            model = inner
            continue
        get_base = getattr(model, "get_base_model", None)
        if callable(get_base) and get_base() is not model:
            model = get_base()
            continue
        return model


def _suffix_names(stack: LayerStack, j: int) -> Callable[[str], bool]:
    """Whether a parameter or buffer name is outside the prefix (block >= j, head, final norm)."""

    def outside(name: str) -> bool:
        block = stack.block_of(name)
        if block is not None:
            return block >= j
        return stack.is_head(name) or stack.is_final_norm(name)

    return outside


_TENSOR_HASHES: dict[int, tuple[int, int, tuple[int, ...], str, bytes]] = {}


def _tensor_digest(tensor: Tensor) -> bytes:
    """blake2b of a tensor's bytes, memoised per tensor while its storage and version hold."""
    ident = (tensor.data_ptr(), tensor._version, tuple(tensor.shape), str(tensor.dtype))
    memo = _TENSOR_HASHES.get(id(tensor))
    if memo is not None and memo[:4] == ident:
        return memo[4]
    data = tensor.detach().to("cpu").contiguous()
    if data.dtype == torch.bfloat16:
        data = data.view(torch.int16)
    buffer = data.numpy().data.cast("B")  # no copy
    digest = hashlib.blake2b(buffer, digest_size=16).digest()
    if len(_TENSOR_HASHES) > 4096:
        _TENSOR_HASHES.clear()
    _TENSOR_HASHES[id(tensor)] = (*ident, digest)
    return digest


def prefix_digest(model: nn.Module, stack: LayerStack, j: int) -> str:
    """Hash of every parameter and buffer the hidden states entering block ``j`` depend on."""
    outside = _suffix_names(stack, j)
    base = base_model_of(model)
    h = hashlib.blake2b(digest_size=16)
    for kind, named in (("p", base.named_parameters()), ("b", base.named_buffers())):
        for name, tensor in named:
            if outside(name) or ".lora_" in name:
                continue
            h.update(f"{kind}:{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
            h.update(_tensor_digest(tensor))
    return h.hexdigest()


_FINGERPRINTS: OrderedDict[int, tuple[Sequence[Any], str]] = OrderedDict()


def examples_fingerprint(features: Sequence[Mapping[str, Any]]) -> str:
    """Hash of the examples' ``input_ids`` and ``attention_mask`` (memoised per list object)."""
    memo = _FINGERPRINTS.get(id(features))
    if memo is not None and memo[0] is features:
        return memo[1]
    h = hashlib.blake2b(digest_size=16)
    h.update(str(len(features)).encode())
    for f in features:
        ids = np.asarray(f["input_ids"], dtype=np.int64)
        h.update(np.int64(len(ids)).tobytes())
        h.update(ids.tobytes())
        h.update(np.asarray(f["attention_mask"], dtype=np.int8).tobytes())
    value = h.hexdigest()
    _FINGERPRINTS[id(features)] = (features, value)
    if len(_FINGERPRINTS) > 32:
        _FINGERPRINTS.popitem(last=False)
    return value


def cache_key(
    model: nn.Module,
    stack: LayerStack,
    j: int,
    features: Sequence[Mapping[str, Any]],
    tokenization: Sequence[Any] = (),
) -> str:
    """The cache entry's key (see the module docstring for what it covers)."""
    base = base_model_of(model)
    name = getattr(getattr(base, "config", None), "_name_or_path", "")
    parts = [
        type(base).__name__,
        str(name),
        str(j),
        prefix_digest(model, stack, j),
        repr(tuple(tokenization)),
        examples_fingerprint(features),
    ]
    return hashlib.blake2b("|".join(parts).encode(), digest_size=20).hexdigest()
