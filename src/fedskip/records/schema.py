"""The records a run writes: one typed row of ``metrics.jsonl``, one typed ``summary.json``.

Every method writes :class:`MetricsRow` objects through :class:`fedskip.records.rundir.RunDir`; the
reports read them back with :meth:`MetricsRow.from_json`. A row is one of three kinds, told
apart by which step it counts, each with its own (historical) JSON layout:

* an **epoch** of a run with one model (centralized):
  ``{"epoch", "train_loss", "elapsed_s", "test": {scores}}``;
* an **epoch of one site's model** (local-only: ``client`` set):
  ``{"client", "epoch", "train_loss", **scores}``;
* a **round** of a federated run: ``{"round", "status", "train_loss", **scores, "client_eval",
  "bytes_down", "bytes_up", "bytes_eval", "cum_bytes_down", "cum_bytes_up", "cum_bytes",
  "seconds", "elapsed_s", "selected_layers", "clients", "replies_ok", "replies_rejected",
  "rejections", "failure", "epsilon"}`` (+ ``"train_seconds"``: each accepted client's own
  training seconds, by client id; ``"site_eval"``: per-site scores of the global model,
  ``"personal_eval"`` under ``personalize``: ``{"sites": {site: {"personal": scores, "global":
  scores}}, "mean": {"personal": scores, "global": scores}}``, example-weighted means).

Any kind carries ``"val"`` (scores on the validation split, ``val-fraction`` > 0) when it was
measured; rows without a validation split keep the layouts above unchanged.

``scores`` are the global-test metrics (``f1``, ``precision``, ``recall``, ``per_type`` for NER;
``accuracy`` / ``macro_f1`` / ``micro_f1`` / ``auroc`` for classification). Bytes are training
traffic measured on the messages (``bytes_eval``: federated-evaluation instructions).

:class:`RunSummary` is the run's ``summary.json``: the JSON object (keys in the order written)
with typed accessors for what every method reports; its headline keys (``final_metric``,
``best_metric``, ``best_round``, ``final_metric_source``) mean the same for every method
(:mod:`fedskip.finish`).

ε = ∞ (DP with ``noise-multiplier=0``: clipped, not noised — no privacy) is written as the
string ``"inf"`` (:data:`INFINITE_EPSILON`) in a row's ``epsilon`` and in ``summary.json``'s
``epsilon`` and ``audit.accountant_epsilon``: JSON has no infinity, and ``null`` there means "no
DP". Readers get ``math.inf`` back (:func:`epsilon_from_json`, :func:`as_number`).

Flower-free and model-free: any layer that writes or reads run records may import this module.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedskip.errors import ConfigError

Json = dict[str, Any]

ROUND_KEYS = (
    "round",
    "status",
    "train_loss",
    "client_eval",
    "bytes_down",
    "bytes_up",
    "bytes_eval",
    "cum_bytes_down",
    "cum_bytes_up",
    "cum_bytes",
    "seconds",
    "elapsed_s",
    "selected_layers",
    "clients",
    "replies_ok",
    "replies_rejected",
    "rejections",
    "failure",
    "epsilon",
    "site_eval",
    "val",
    "personal_eval",
    "dp_step",
    "train_seconds",
)
"""The fixed keys of a round row; every other key is a global-test score."""
INFINITE_EPSILON = "inf"
"""ε = ∞ in the JSON records (a spent ε that no finite number bounds)."""
_OPTIONAL = ("site_eval", "val", "personal_eval", "dp_step", "train_seconds")
"""Written only when not empty (older rows have none of them)."""


@dataclass
class MetricsRow:
    """One line of ``metrics.jsonl`` (see the module docstring for the three kinds)."""

    epoch: int | None = None
    round: int | None = None
    client: int | None = None
    """Local-only: the client (site) whose own model this epoch belongs to."""
    train_loss: float | None = None
    scores: Json = field(default_factory=dict)
    """Global-test metrics of the model after this step (empty when not evaluated)."""
    elapsed_s: float | None = None
    """Seconds since the run started (a resumed run counts the time before the interruption)."""
    # ---- rounds only
    status: str = "ok"
    client_eval: Json = field(default_factory=dict)
    bytes_down: int = 0
    """Training (and layer-scoring) instructions the server sent this round."""
    bytes_up: int = 0
    """Training replies the server received this round."""
    bytes_eval: int = 0
    """Federated-evaluation instructions of this round."""
    epsilon: float | None = None
    """ε spent so far (DP runs)."""
    cum_bytes_down: int = 0
    cum_bytes_up: int = 0
    """Running totals of ``bytes_down`` / ``bytes_up`` up to this round."""
    seconds: float = 0.0
    """This round's wall time."""
    selected_layers: list[int] = field(default_factory=list)
    """Blocks trained this round (empty for ``method=lora``: adapters in every block)."""
    clients: list[int] = field(default_factory=list)
    """Client ids sampled for training."""
    replies_ok: int = 0
    replies_rejected: int = 0
    rejections: list[str] = field(default_factory=list)
    """Why each rejected reply was refused (one line each)."""
    failure: str = ""
    """Why the round failed (status ``failed``: too few valid replies)."""
    site_eval: Json = field(default_factory=dict)
    """Per-site scores of the global model: from the server's global-test predictions (evaluate
    once), else from the sites' federated-evaluation replies."""
    dp_step: Json = field(default_factory=dict)
    """DP-SGD runs: what this round's noised steps looked like, averaged over steps and clients
    (example-weighted): ``signal_norm`` ‖Σ clipped unit gradients‖, ``noise_norm`` σ·C·√d (the
    norm of the noise added to that sum, d trainable coordinates), ``clipped_share`` (units
    whose gradient norm exceeded C) and ``unit_norm`` (median unit gradient norm); signal below
    noise by orders of magnitude means the steps are mostly noise (docs/privacy.md)."""
    val: Json = field(default_factory=dict)
    """Scores on the validation split after this step (``val-fraction`` > 0; else empty): what
    the plateau rule and the choice of the reported model read, never the test scores."""
    personal_eval: Json = field(default_factory=dict)
    """``personalize``: each site's own model and the global model on the site's test split."""
    train_seconds: Json = field(default_factory=dict)
    """Each accepted client's own training time this round (wall seconds at the site: its train
    reply's ``train-seconds``), keyed by client id as a string; empty in records written before
    2026-12-07 and in rounds without accepted replies. Their sum is the round's client compute,
    which ``seconds`` (the whole round at the server: simulated clients as many at once as the
    machine has cores, plus evaluation) is not."""

    @property
    def kind(self) -> str:
        """``round``, ``site-epoch`` (local-only) or ``epoch``."""
        if self.round is not None:
            return "round"
        return "site-epoch" if self.client is not None else "epoch"

    @property
    def step(self) -> int:
        """The 1-based epoch or round."""
        return int(self.round if self.round is not None else self.epoch or 0)

    @property
    def cum_bytes(self) -> int:
        """Training bytes exchanged up to and including this round (up + down)."""
        return self.cum_bytes_down + self.cum_bytes_up

    def metric(self, name: str) -> float | None:
        """Metric ``name`` on the global test set, else from the clients' federated evaluation."""
        for section in (self.scores, self.client_eval):
            value = as_number(section.get(name))
            if value is not None:
                return value
        return None

    # ------------------------------------------------------------------ JSON
    def to_json(self) -> Json:
        """The JSON object of this row, in the layout of its kind."""
        val = {"val": dict(self.val)} if self.val else {}
        if self.kind == "epoch":
            return {
                "epoch": self.epoch,
                "train_loss": self.train_loss,
                "elapsed_s": self.elapsed_s,
                "test": dict(self.scores),
                **val,
            }
        if self.kind == "site-epoch":
            return {
                "client": self.client,
                "epoch": self.epoch,
                "train_loss": self.train_loss,
                **self.scores,
                **val,
            }
        row: Json = {"round": self.round, "status": self.status, "train_loss": self.train_loss}
        row.update(self.scores)
        for key in ROUND_KEYS[3 : -len(_OPTIONAL)]:
            value = self.cum_bytes if key == "cum_bytes" else getattr(self, key)
            row[key] = copy.copy(value)  # lists and sections are not shared with the row
        for key in _OPTIONAL:
            if getattr(self, key):
                row[key] = copy.deepcopy(getattr(self, key))
        row["epsilon"] = epsilon_to_json(self.epsilon)
        return row

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> MetricsRow:
        """The row of a ``metrics.jsonl`` line (inverse of :meth:`to_json`)."""
        if "round" in row:
            fields = {k: copy.copy(v) for k, v in row.items() if k in ROUND_KEYS}
            fields.pop("cum_bytes", None)  # derived: cum_bytes_down + cum_bytes_up
            if "epsilon" in fields:
                fields["epsilon"] = epsilon_from_json(fields["epsilon"])
            scores = {k: v for k, v in row.items() if k not in ROUND_KEYS}
            return cls(**fields, scores=scores)
        if "client" in row:
            fixed = ("client", "epoch", "train_loss", "val")
            return cls(
                client=int(row["client"]),
                epoch=int(row.get("epoch", 0)),
                train_loss=row.get("train_loss"),
                scores={k: v for k, v in row.items() if k not in fixed},
                val=dict(row.get("val") or {}),
            )
        return cls(
            epoch=int(row.get("epoch", 0)),
            train_loss=row.get("train_loss"),
            elapsed_s=row.get("elapsed_s"),
            scores=dict(row.get("test") or {}),
            val=dict(row.get("val") or {}),
        )


class RunSummary(dict[str, Any]):
    """``summary.json`` of a run: the JSON object (keys in the order written) with typed
    accessors for what every method reports."""

    def to_json(self) -> Json:
        """The JSON object, ε = ∞ written as :data:`INFINITE_EPSILON`."""
        out = dict(self)
        if "epsilon" in out:
            out["epsilon"] = epsilon_to_json(out["epsilon"])
        audit = out.get("audit")
        if isinstance(audit, Mapping) and "accountant_epsilon" in audit:
            out["audit"] = {
                **audit,
                "accountant_epsilon": epsilon_to_json(audit["accountant_epsilon"]),
            }
        return out

    @property
    def primary_metric(self) -> str:
        """The headline metric's name (``f1``, ``macro_f1`` or ``micro_f1``)."""
        return str(self.get("primary_metric", ""))

    @property
    def final_metric(self) -> float | None:
        """The test metric of the model the run reports (``final_metric``, one meaning for every
        method: :mod:`fedskip.finish`). Records written before every method wrote that key are
        read as they were meant: a centralized run's last epoch (``final``), the mean over a
        local-only run's site models (``mean_metric``)."""
        if "final_metric" in self:
            return as_number(self["final_metric"])
        legacy = self.get("final")
        if isinstance(legacy, Mapping):
            return as_number(legacy.get(self.primary_metric))
        return as_number(self.get("mean_metric"))

    def number(self, key: str) -> float | None:
        """A numeric field (``best_metric``, ``seconds``, ``epsilon`` at δ, ``reduction`` versus
        full-model FedAvg, ...) as a float; None when absent or not a number."""
        return as_number(self.get(key))

    @property
    def total_bytes(self) -> int | None:
        """Training bytes exchanged, up + down (None when the run reports no traffic)."""
        traffic = self.get("bytes")
        if not isinstance(traffic, Mapping):
            return None
        return int((as_number(traffic.get("up")) or 0) + (as_number(traffic.get("down")) or 0))

    @property
    def failed_rounds(self) -> list[int]:
        """Rounds the server could not aggregate (too few valid replies)."""
        return [int(r) for r in self.get("failed_rounds") or []]

    @property
    def finished(self) -> bool:
        """Whether the run measures its config: every round aggregated."""
        return not self.failed_rounds


def as_number(value: Any) -> float | None:
    """``value`` as a float when it is an int or float (not a bool) or ε = ∞ as written
    (:data:`INFINITE_EPSILON` → ``math.inf``), else None."""
    if value == INFINITE_EPSILON:
        return math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def epsilon_to_json(value: Any) -> Any:
    """ε for a JSON record: ``math.inf`` → :data:`INFINITE_EPSILON`, anything else unchanged."""
    if isinstance(value, float) and math.isinf(value) and value > 0:
        return INFINITE_EPSILON
    return value


def epsilon_from_json(value: Any) -> float | None:
    """ε from a JSON record: a number, ``math.inf`` for :data:`INFINITE_EPSILON`, else None."""
    return as_number(value)


def read_metrics(path: Path) -> list[MetricsRow]:
    """The rows of a ``metrics.jsonl`` (empty when there is none; a torn last line of a killed
    run is skipped; a damaged line before it is a :class:`~fedskip.errors.ConfigError` naming
    file:line)."""
    if not path.is_file():
        return []
    lines = path.read_text("utf-8").splitlines()
    rows: list[MetricsRow] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines):
                break  # the run was killed while writing its last line
            raise ConfigError(f"{path}:{number}: invalid JSON ({exc.msg})") from None
        if isinstance(row, dict):
            rows.append(MetricsRow.from_json(row))
    return rows
