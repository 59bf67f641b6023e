"""The end of every run, whatever the method: the headline metrics, privacy, the audit, then
``summary.json`` and the exported model.

Every method's ``summary.json`` carries the same headline keys with one meaning
(:class:`Headline`):

``final_metric``
    The primary metric (``primary_metric``: F1, macro or micro F1) on the global test set of the
    model the run reports — the one it exports: with a validation split (``val-fraction`` > 0)
    the best-validation round/epoch's, else the last round/epoch's. Local-only has no single
    model: the mean over its sites' models, each reported the same way. Where nothing scores
    the global test set (a deployment with ``data=sites``: the coordinator holds no data)
    it is the sites' federated evaluation of that model (example-weighted mean), and
    ``final_metric_source`` says so.
``best_metric`` / ``best_round``
    The primary metric of the run's best round/epoch and that round/epoch. With a validation
    split the best one is chosen on validation, so ``best_metric`` equals ``final_metric`` and
    nothing is picked on the test set; without one it is the highest value of the learning curve
    (a peak read off the test set: a reference, never the headline). Local-only's curve is the
    mean over its site models per epoch; with a validation split each site chose its own epoch
    and ``best_round`` is None. Both None when nothing was scored.
``final_metric_source``
    ``global-test`` (scored on the held-out global test set), ``sites`` (the sites' federated
    evaluation) or None (not scored).

Per-site figures never sit under these keys: local-only's site models are listed in ``sites``,
a federation's per-site scores of the final global model in ``site_metrics``.

Flower-free: the federated server and the centralized and local-only entries call
:func:`finish_summary`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fedskip.config import Config
from fedskip.records.rundir import RunDir
from fedskip.records.schema import RunSummary

if TYPE_CHECKING:
    from torch import nn

    from fedskip.models.layers import LayerStack
    from fedskip.pipeline import Prepared

GLOBAL_TEST = "global-test"
"""``final_metric_source``: scored on the global test set held by the trainer / coordinator."""
SITES = "sites"
"""``final_metric_source``: the sites' federated evaluation (example-weighted mean)."""

Curve = Sequence[tuple[int, float | None]]
"""The primary metric per round/epoch (1-based step, None where not scored)."""


@dataclass(frozen=True)
class Headline:
    """``final_metric``, ``best_metric``, ``best_round`` and ``final_metric_source`` of a run
    (meanings in the module docstring)."""

    final_metric: float | None
    best_metric: float | None
    best_round: int | None
    source: str | None

    @classmethod
    def of_curve(
        cls, curve: Curve, *, chosen: Mapping[str, Any] | None = None, source: str = GLOBAL_TEST
    ) -> Headline:
        """The headline of one model's learning curve; ``chosen``: the validation choice's
        summary (:meth:`~fedskip.train.plateau.ValidationChoice.summary`), None without a
        validation split."""
        if chosen is not None:
            value = chosen.get("test_at_best")
            return cls(
                value, value, chosen.get("best_round"), source if value is not None else None
            )
        scored = [(step, value) for step, value in curve if value is not None]
        final = curve[-1][1] if curve else None
        best = max(scored, key=lambda point: point[1], default=None)  # the earliest of ties
        return cls(
            final,
            best[1] if best else None,
            best[0] if best else None,
            source if final is not None else None,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "final_metric": self.final_metric,
            "final_metric_source": self.source,
            "best_metric": self.best_metric,
            "best_round": self.best_round,
        }


@dataclass
class Export:
    """The model a run exports to ``model/`` (and audits with ``audit-canaries``)."""

    model: nn.Module
    tokenizer: Any
    stack: LayerStack
    prepared: Prepared
    selected_layers: list[int] | None
    marker: dict[str, Any] = field(default_factory=dict)
    """Extra ``fedskip.json`` fields (personalization, the audit's marker is added here)."""
    sites: Sequence[str] = ()
    """The sites named in the model card."""


def finish_summary(
    body: Mapping[str, Any],
    headline: Headline,
    *,
    cfg: Config,
    rundir: RunDir,
    chosen: Mapping[str, Any] | None = None,
    privacy: Mapping[str, Any] | None = None,
    export: Export | None = None,
) -> RunSummary:
    """Write ``summary.json`` — ``body`` (the method's own fields), the :class:`Headline`, the
    validation choice (``chosen``: ``stopped_round``, ``best_val``, ``test_at_best``, ...), the
    privacy fields (ε at δ, the privacy unit, ...) and, with ``audit-canaries``, the audit of
    ``export``'s model — then export that model (already the reported one: the caller restores
    the best-validation state first). Returns the summary."""
    summary = RunSummary({**body, **headline.to_json()})
    summary.update(chosen or {})
    summary.update(privacy or {})
    if export is None:
        rundir.write_summary(summary)
        return summary
    marker = dict(export.marker)
    if cfg.audit_canaries:  # [audit] the trainer / coordinator audits its own model
        from fedskip.audit import audit_marker, run_audit

        summary["audit_run"] = True
        summary["audit"] = run_audit(
            cfg,
            export.model,
            export.tokenizer,
            export.stack,
            export.prepared,
            out=rundir.path,
            accountant_epsilon=summary.get("epsilon"),
        )
        marker.update(audit_marker(cfg))
    rundir.write_summary(summary)
    rundir.save_model(
        export.model,
        export.tokenizer,
        cfg=cfg,
        selected_layers=export.selected_layers,
        extra=marker,
        summary=summary,
        sites=export.sites,
    )
    return summary
