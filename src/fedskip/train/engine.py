"""The one training loop, shared by centralized, local-only and federated (Flower) clients.

Read it top to bottom: :func:`train` builds a seeded, shuffling DataLoader, an AdamW optimizer
over the trainable parameters only (frozen blocks get no optimizer state, so layer skipping saves
optimizer memory too), a linear warmup/decay schedule (over the whole call, or restarted every
epoch: ``lr_schedule``), and runs ``epochs`` passes with gradient
accumulation, clipping and an optional FedProx proximal term. :func:`predict` returns per-example
logits; :func:`evaluate` turns them into task metrics.

A ``privacy`` object (DP-SGD, see :mod:`fedskip.privacy`) plugs in through two hooks:
``attach(model, optimizer, loader) -> (model, optimizer, loader)`` before training, and
``after_step()`` after each optimizer step. When it is attached the engine does not clip the
summed gradient (DP-SGD clips per privacy unit) and does not divide the loss by ``grad_accum``
(the DP optimizer averages itself); its loader marks which micro-batch ends a step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np
import torch
from torch import Tensor, nn

from fedskip.data.encode import EncodedCls, EncodedNer
from fedskip.models.freeze import frozen_modules_eval
from fedskip.train.batching import LengthGroupedBatches
from fedskip.train.metrics import score
from fedskip.train.prefix_cache import ActivationCache, Collate

if TYPE_CHECKING:
    from fedskip.config import Config


class PrivacyHook(Protocol):
    """What the engine needs from a DP-SGD implementation."""

    def attach(self, model: nn.Module, optimizer: torch.optim.Optimizer, data_loader: Any) -> Any:
        """Return ``(model, optimizer, data_loader)``, possibly wrapped."""

    def after_step(self) -> None:
        """Called after every optimizer step (privacy accounting)."""

    def detach(self, model: nn.Module) -> None:
        """Remove what ``attach`` put on ``model`` (called when training ends)."""


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings of one training call (see the config keys of the same names)."""

    lr: float = 5e-5
    head_lr: float = 0.0  # 0 = same as lr
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1  # share of optimizer steps with linear warmup
    lr_schedule: str = "run"  # "run": one warmup/decay over all epochs; "epoch": one per epoch
    grad_clip: float = 1.0  # max L2 norm of the summed gradient; 0 = off
    grad_accum: int = 1  # micro-batches per optimizer step
    batch_size: int = 16  # examples per micro-batch
    seed: int = 42
    quiet: bool = False

    @classmethod
    def from_config(cls, cfg: Config) -> TrainSettings:
        return cls(
            lr=cfg.lr,
            head_lr=cfg.head_lr,
            weight_decay=cfg.weight_decay,
            warmup_ratio=cfg.warmup_ratio,
            lr_schedule=cfg.lr_schedule,
            grad_clip=cfg.grad_clip,
            grad_accum=cfg.grad_accum,
            batch_size=cfg.batch_size,
            seed=cfg.seed,
            quiet=cfg.quiet,
        )


@dataclass(frozen=True)
class TrainResult:
    """``loss``: example-weighted mean of the batch task losses over all epochs (without the
    proximal term);
    ``num_examples``: examples in the training set (what FedAvg weights by, not batches and not
    multiplied by epochs); ``steps``: optimizer steps; ``seconds``: wall-clock time."""

    loss: float
    num_examples: int
    steps: int
    seconds: float


def train(
    model: nn.Module,
    features: Sequence[Any],
    collate: Collate,
    settings: TrainSettings,
    *,
    epochs: int,
    device: torch.device | str,
    prox_reference: Mapping[str, Tensor] | None = None,
    proximal_mu: float = 0.0,
    privacy: PrivacyHook | None = None,
    desc: str = "train",
    on_epoch_end: Callable[[int, float], bool | None] | None = None,
    cache: ActivationCache | None = None,
) -> TrainResult:
    """Train ``model`` (already on ``device``) in place for ``epochs`` passes over ``features``.

    ``prox_reference`` maps each trainable parameter name to the global weights; with
    ``proximal_mu`` > 0 the loss gets ``mu/2 * ||w - w_global||²`` over the trainable parameters
    (FedProx). ``on_epoch_end(epoch, mean_loss)`` is called after each epoch (1-based); when it
    returns True training stops there (a plateau on validation; the schedule is not shortened).
    ``cache``: the frozen-prefix activation cache (:mod:`fedskip.train.prefix_cache`); when the
    blocks below the lowest trained one are frozen, they run once per example, not per epoch.
    Modules whose parameters are all frozen run in eval mode (no dropout), the rest in train mode.
    """
    start = time.perf_counter()
    if len(features) == 0:
        return TrainResult(loss=0.0, num_examples=0, steps=0, seconds=0.0)
    if cache is not None:
        features, collate = cache.prepare(model, features, collate, device=device)
    torch.manual_seed(settings.seed)  # dropout masks and any random init below
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("the model has no trainable parameters")
    generator = torch.Generator().manual_seed(settings.seed)
    loader: Any
    dataset = cast("torch.utils.data.Dataset[Any]", features)  # a sequence is a map dataset
    if privacy is None:  # length-grouped batches pad little (train/batching.py)
        sampler = LengthGroupedBatches(
            [len(f["input_ids"]) for f in features],
            settings.batch_size,
            generator=generator,
            micro_batches=settings.grad_accum,
        )
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=collate,
        )
    else:  # DP-SGD replaces the batches by Poisson draws (it reads dataset and batch_size)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=settings.batch_size,
            shuffle=True,
            collate_fn=collate,
            generator=generator,
        )
    optimizer: Any = torch.optim.AdamW(_param_groups(model, named, settings), lr=settings.lr)
    prox = _prox_pairs(named, prox_reference, device) if prox_reference and proximal_mu else []
    multi_label = _is_multi_label(model)
    model.train()
    if privacy is not None:
        model, optimizer, loader = privacy.attach(model, optimizer, loader)
    frozen_modules_eval(model)
    per_epoch = math.ceil(len(loader) / settings.grad_accum)
    scheduler, restarts = schedule(
        optimizer, settings.warmup_ratio, per_epoch, epochs, settings.lr_schedule
    )
    loop = _Loop(
        model,
        optimizer,
        scheduler,
        settings,
        device,
        multi_label,
        [p for _, p in named],
        prox,
        proximal_mu,
        privacy,
    )

    from tqdm.auto import tqdm

    loss_sum, seen = 0.0, 0
    try:
        with tqdm(
            total=len(loader) * epochs, desc=desc, disable=settings.quiet, leave=False
        ) as bar:
            for epoch in range(1, epochs + 1):
                if restarts is not None:
                    restarts.origin = loop.steps
                epoch_loss, epoch_seen = loop.run_epoch(loader, bar)
                loss_sum, seen = loss_sum + epoch_loss * epoch_seen, seen + epoch_seen
                if on_epoch_end is not None and on_epoch_end(epoch, epoch_loss):
                    break
    finally:  # the model leaves training as it came: no per-example hooks on later passes
        if privacy is not None:
            privacy.detach(model)
    return TrainResult(
        loss=loss_sum / seen if seen else 0.0,
        num_examples=len(features),
        steps=loop.steps,
        seconds=time.perf_counter() - start,
    )


@dataclass
class _Loop:
    """The state of one :func:`train` call; :meth:`run_epoch` is the inner loop."""

    model: nn.Module
    optimizer: Any
    scheduler: Any
    settings: TrainSettings
    device: torch.device | str
    multi_label: bool
    trainable: list[nn.Parameter]
    prox: list[tuple[nn.Parameter, Tensor]]
    proximal_mu: float
    privacy: PrivacyHook | None
    steps: int = 0

    def run_epoch(self, loader: Any, bar: Any) -> tuple[float, int]:
        """One pass; returns (example-weighted mean of the batch losses, examples seen)."""
        # The DP optimizer averages over accumulated micro-batches itself.
        scale = 1.0 if self.privacy is not None else 1.0 / self.settings.grad_accum
        loss_sum, seen, pending = 0.0, 0, 0
        for i, raw in enumerate(loader):
            batch = _to_device(raw, self.device, self.multi_label)
            n = int(batch["input_ids"].shape[0])
            if n > 0:  # Poisson sampling (DP-SGD) may draw an empty batch
                loss = _task_loss(self.model, batch, self.multi_label)
                total = loss + _prox_term(self.prox, self.proximal_mu) if self.prox else loss
                (total * scale).backward()
                loss_sum += float(loss.detach()) * n
                seen += n
                pending += 1
            if pending and self._step_due(raw, pending, i + 1 == len(loader)):
                self._step()
                pending = 0
            bar.update(1)
            if seen:
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", refresh=False)
        return (loss_sum / seen if seen else 0.0), seen

    def _step_due(self, raw: Any, pending: int, last: bool) -> bool:
        """A private loader marks the last micro-batch of each optimizer step (``ends_step``:
        DP-SGD steps once per Poisson draw of privacy units, in however many micro-batches);
        otherwise step every ``grad_accum`` micro-batches and at the end of the epoch."""
        ends = getattr(raw, "ends_step", None)
        if ends is not None:
            return bool(ends)
        return pending == self.settings.grad_accum or last

    def _step(self) -> None:
        if self.settings.grad_clip > 0 and self.privacy is None:  # DP-SGD clips per example
            torch.nn.utils.clip_grad_norm_(self.trainable, self.settings.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.privacy is not None:
            self.privacy.after_step()
        self.steps += 1


def unwrap_model(model: nn.Module) -> nn.Module:
    """The Hugging Face model inside an Opacus ``GradSampleModule`` (or similar) wrapper."""
    inner = getattr(model, "_module", None)
    while isinstance(inner, nn.Module):
        model, inner = inner, getattr(inner, "_module", None)
    return model


def _is_multi_label(model: nn.Module) -> bool:
    config = getattr(unwrap_model(model), "config", None)
    return getattr(config, "problem_type", None) == "multi_label_classification"


def _head_names(model: nn.Module) -> set[str]:
    """Parameter names of the task head (for ``head_lr``)."""
    from fedskip.models.layers import discover_layers

    prefixes = tuple(discover_layers(unwrap_model(model)).head_prefixes)
    return {n for n, _ in model.named_parameters() if _matches(n, prefixes)}


def _matches(name: str, prefixes: Sequence[str]) -> bool:
    """``name`` starts with a prefix, also under a wrapper (``base_model.model.classifier.``)."""
    dotted = [p if p.endswith(".") else p + "." for p in prefixes]
    return any(name.startswith(p) or f".{p}" in name for p in dotted)


def _param_groups(
    model: nn.Module, named: list[tuple[str, nn.Parameter]], settings: TrainSettings
) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on biases and norms (1-D tensors); ``head_lr`` on the head."""
    head = _head_names(model) if settings.head_lr > 0 else set()
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in named:
        groups.setdefault((name in head, param.ndim >= 2), []).append(param)
    return [
        {
            "params": params,
            "lr": settings.head_lr if is_head else settings.lr,
            "weight_decay": settings.weight_decay if decay else 0.0,
        }
        for (is_head, decay), params in sorted(groups.items())
    ]


LR_SCHEDULES = ("run", "epoch")


@dataclass
class EpochRestarts:
    """The ``epoch`` schedule's factor: linear warmup over ``ceil(warmup_ratio * per_epoch)``
    optimizer steps, then linear decay to zero at ``per_epoch`` steps, counted from ``origin``
    (the step the current epoch began at; :func:`train` moves it at every epoch). Each epoch
    thus gets the schedule one federated round of one local epoch gets: the same shape as
    ``transformers.get_linear_schedule_with_warmup`` over one epoch."""

    warmup: int
    per_epoch: int
    origin: int = 0

    def __call__(self, step: int) -> float:
        s = step - self.origin
        if s < self.warmup:
            return s / max(1, self.warmup)
        return max(0.0, (self.per_epoch - s) / max(1, self.per_epoch - self.warmup))


def warmup_steps(warmup_ratio: float, updates: int) -> int:
    """``ceil(warmup_ratio * updates)`` warmup steps, but never all of them: the first step of
    a warmup runs at learning rate 0, so a schedule of one step (a DP-SGD epoch of one noised
    step) would otherwise train nothing while still spending its privacy budget."""
    return min(math.ceil(warmup_ratio * updates), max(updates - 1, 0))


def schedule(
    optimizer: Any, warmup_ratio: float, per_epoch: int, epochs: int, kind: str = "run"
) -> tuple[Any, EpochRestarts | None]:
    """The learning-rate scheduler of one :func:`train` call (stepped once per optimizer step)
    and, for ``kind="epoch"``, the :class:`EpochRestarts` whose ``origin`` marks each epoch's
    start. ``run``: ``transformers``' linear warmup/decay over ``per_epoch * epochs`` steps."""
    if kind == "run":
        from transformers import get_linear_schedule_with_warmup

        updates = per_epoch * epochs
        warmup = warmup_steps(warmup_ratio, updates)
        return get_linear_schedule_with_warmup(optimizer, warmup, max(updates, 1)), None
    if kind != "epoch":
        raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, not {kind!r}")
    restarts = EpochRestarts(warmup_steps(warmup_ratio, per_epoch), max(per_epoch, 1))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, restarts), restarts


def _prox_pairs(
    named: list[tuple[str, nn.Parameter]],
    reference: Mapping[str, Tensor],
    device: torch.device | str,
) -> list[tuple[nn.Parameter, Tensor]]:
    missing = [n for n, _ in named if n not in reference]
    if missing:
        raise ValueError(f"prox_reference lacks trainable parameters: {missing[:3]}")
    return [(p, reference[n].detach().to(device=device, dtype=p.dtype)) for n, p in named]


def _prox_term(pairs: list[tuple[nn.Parameter, Tensor]], mu: float) -> Tensor:
    """FedProx: ``mu/2 * sum ||w - w_global||²`` over the trainable parameters."""
    sq = torch.stack([(p - ref).pow(2).sum() for p, ref in pairs]).sum()
    return 0.5 * mu * sq


def _to_device(
    batch: Mapping[str, Any], device: torch.device | str, multi_label: bool
) -> dict[str, Tensor]:
    out = {k: v.to(device) for k, v in batch.items() if isinstance(v, Tensor)}
    if multi_label and "labels" in out:
        out["labels"] = out["labels"].float()  # BCEWithLogits wants float targets
    return out


def _task_loss(model: nn.Module, batch: dict[str, Tensor], multi_label: bool) -> Tensor:
    """The model's own loss when it computes one, else cross-entropy / BCE from the logits."""
    out = model(**batch)
    loss = out.get("loss") if isinstance(out, Mapping) else getattr(out, "loss", None)
    if loss is not None:
        return loss
    logits = out["logits"] if isinstance(out, Mapping) else out.logits
    labels = batch["labels"]
    if multi_label:
        return nn.functional.binary_cross_entropy_with_logits(logits.float(), labels)
    return nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100
    )


@torch.no_grad()
def predict(
    model: nn.Module,
    features: Sequence[Any],
    collate: Collate,
    *,
    batch_size: int,
    device: torch.device | str,
    cache: ActivationCache | None = None,
) -> list[np.ndarray]:
    """Per-example float32 logits, in input order: ``(tokens, labels)`` for token
    classification (padding removed), ``(labels,)`` for sequence classification. Examples are
    batched by length to pad little. ``cache``: see :func:`train`. Restores every module's
    train/eval mode."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    if cache is not None:
        features, collate = cache.prepare(model, features, collate, device=device)
    order = sorted(range(len(features)), key=lambda j: len(features[j]["input_ids"]))
    results: list[np.ndarray] = [np.empty(0)] * len(features)
    for begin in range(0, len(order), batch_size):
        indices = order[begin : begin + batch_size]
        batch = {k: v for k, v in collate([features[j] for j in indices]).items() if k != "labels"}
        batch = _to_device(batch, device, multi_label=False)
        logits = model(**batch).logits.float().cpu().numpy()
        mask = batch["attention_mask"].bool().cpu().numpy()
        for row, j in enumerate(indices):
            results[j] = logits[row][mask[row]] if logits.ndim == 3 else logits[row]
    for module, mode in modes.items():
        module.train(mode)
    return results


def evaluate(
    model: nn.Module,
    encoded: EncodedNer | EncodedCls,
    collate: Collate,
    *,
    batch_size: int,
    device: torch.device | str,
    cache: ActivationCache | None = None,
) -> dict[str, Any]:
    """Task metrics of ``model`` on encoded data (NER or classification, by the encoding)."""
    logits = predict(
        model, encoded.features, collate, batch_size=batch_size, device=device, cache=cache
    )
    return score(encoded, logits)
