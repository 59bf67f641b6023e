"""Per-unit gradient norms and clipped sums of a Linear layer from its token rows, without a
per-example (or per-unit) copy of the weight gradient where that is cheaper.

A Linear layer ``y = x Wᵀ + b`` is applied to every token. Write ``a_t`` for its input at token
``t`` and ``g_t`` for the gradient of that token's example's *own* loss with respect to its
output there. A privacy unit ``u`` (a patient: all tokens of all their examples) has gradient

    G_u = Σ_{t ∈ u} g_t a_tᵀ   (d_out × d_in),      β_u = Σ_{t ∈ u} g_t   (the bias)

and its squared Frobenius norm needs only inner products among the unit's own tokens (the
*ghost norm* of Li et al. 2021, "Large Language Models Can Be Strong Differentially Private
Learners", extended from one sequence to a unit of several):

    ‖G_u‖² = Σ_{s, t ∈ u} (a_s · a_t)(g_s · g_t)

That costs ``L²(d_in + d_out)`` for a unit of ``L`` tokens against ``L·d_in·d_out`` for
materialising ``G_u``; :func:`linear_unit_norms2` takes the cheaper per group of units (the
mixed rule of Bu et al., arXiv 2210.00038). Once each unit's clip factor ``c_u`` is known, the
clipped sum is one contraction over all tokens of the step (book-keeping, Bu et al.):

    Σ_u c_u G_u = Σ_t c_{u(t)} g_t a_tᵀ      (:func:`linear_clipped_sum`)

Every function here is exact arithmetic on the given rows (float32 accumulation); the privacy
meaning (what a unit is, the clip norm, the noise) is the caller's, see
:mod:`fedskip.privacy.fast_clipping`.
"""

from __future__ import annotations

import torch
from torch import Tensor

CHUNK_FLOATS = 1 << 25
"""Float32 elements (128 MiB) that one group of units may use for its padded token rows and its
Gram (or materialised gradient) matrices; bounds the extra memory of a step's norm pass."""


def linear_unit_norms2(a: Tensor, g: Tensor, rows: Tensor, num_units: int) -> Tensor:
    """Squared norm of each unit's weight gradient ``‖G_u‖²`` (shape ``[num_units]``, float32).

    ``a``: ``[N, d_in]`` layer inputs of the step's N tokens, ``g``: ``[N, d_out]`` the
    gradients of each token's example's own loss at the layer's output, ``rows``: ``[N]`` the
    unit (0 … num_units − 1) of each token. Units are processed in groups of similar token
    counts, each group by Gram matrices or by materialising its ``G_u``, whichever costs less.
    """
    out = torch.zeros(num_units, dtype=torch.float32, device=a.device)
    if a.shape[0] == 0:
        return out
    if not bool((rows[1:] >= rows[:-1]).all()):  # tokens arrive in unit order unless a
        order = torch.argsort(rows, stable=True)  # unit was drawn again in a later draw
        a, g, rows = a[order], g[order], rows[order]
    counts = torch.bincount(rows, minlength=num_units)
    length = int(counts.max())
    if (
        bool((counts == length).all())
        and num_units * _floats_per_unit(length, a.shape[1], g.shape[1]) <= CHUNK_FLOATS
    ):
        return _norms2(a.reshape(num_units, length, -1), g.reshape(num_units, length, -1), length)
    starts = torch.cumsum(counts, 0) - counts
    by_size = [u for u in torch.argsort(counts).tolist() if counts[u] > 0]
    d_in, d_out = a.shape[1], g.shape[1]
    i = 0
    while i < len(by_size):
        j, length = _group_end(by_size, i, counts, d_in, d_out)
        units = torch.tensor(by_size[i:j], device=a.device)
        out[units] = _group_norms2(a, g, starts[units], counts[units], length)
        i = j
    return out


def _group_end(
    by_size: list[int], i: int, counts: Tensor, d_in: int, d_out: int
) -> tuple[int, int]:
    """End (exclusive) of the group of units starting at ``by_size[i]`` that fits
    :data:`CHUNK_FLOATS` at the group's longest unit, and that length."""
    j, length = i, int(counts[by_size[i]])
    while j < len(by_size):
        longest = int(counts[by_size[j]])
        if j > i and (j - i + 1) * _floats_per_unit(longest, d_in, d_out) > CHUNK_FLOATS:
            break
        j, length = j + 1, longest
    return j, length


def _group_norms2(a: Tensor, g: Tensor, starts: Tensor, counts: Tensor, length: int) -> Tensor:
    """‖G_u‖² of one group of units, their token rows padded with zeros to ``length``."""
    units = torch.arange(len(counts), device=a.device).repeat_interleave(counts)
    first = torch.cumsum(counts, 0) - counts
    positions = torch.arange(len(units), device=a.device) - first.repeat_interleave(counts)
    tokens = starts.repeat_interleave(counts) + positions  # a unit's tokens are contiguous
    ap = a.new_zeros((len(counts), length, a.shape[1]), dtype=torch.float32)
    gp = g.new_zeros((len(counts), length, g.shape[1]), dtype=torch.float32)
    ap[units, positions] = a[tokens].float()
    gp[units, positions] = g[tokens].float()
    return _norms2(ap, gp, length)


def _floats_per_unit(length: int, d_in: int, d_out: int) -> int:
    """Extra float32 elements one unit of ``length`` tokens needs in :func:`_norms2`."""
    return length * (d_in + d_out) + min(2 * length * length, d_in * d_out)


def _norms2(ap: Tensor, gp: Tensor, length: int) -> Tensor:
    """‖G_u‖² from zero-padded ``[units, length, d]`` token rows: Gram matrices of the tokens
    (ghost norm) or the materialised ``G_u``, whichever costs less."""
    ap, gp = ap.float(), gp.float()
    d_in, d_out = ap.shape[2], gp.shape[2]
    if length * (d_in + d_out) <= d_in * d_out:  # ghost norm: Gram matrices of the tokens
        gram_a = torch.bmm(ap, ap.transpose(1, 2))
        gram_g = torch.bmm(gp, gp.transpose(1, 2))
        return (gram_a * gram_g).sum(dim=(1, 2))
    grads = torch.bmm(gp.transpose(1, 2), ap)  # [units, d_out, d_in]
    return grads.pow(2).sum(dim=(1, 2))


def bias_unit_norms2(g: Tensor, rows: Tensor, num_units: int) -> Tensor:
    """Squared norm of each unit's bias gradient ``‖Σ_{t∈u} g_t‖²`` (``[num_units]``)."""
    sums = torch.zeros(num_units, g.shape[1], dtype=torch.float32, device=g.device)
    sums.index_add_(0, rows, g.float())
    return sums.pow(2).sum(dim=1)


def linear_clipped_sum(a: Tensor, g: Tensor, token_factor: Tensor) -> tuple[Tensor, Tensor]:
    """``(Σ_t c_t g_t a_tᵀ, Σ_t c_t g_t)``: the clipped sums of weight and bias, where
    ``token_factor[t]`` is the clip factor of token ``t``'s unit."""
    weighted = g.float() * token_factor[:, None]
    return weighted.T @ a.float(), weighted.sum(dim=0)
