"""The results table: one row per run, with the comparisons the paper makes.

Columns (``results.csv``; ``results.md`` shows the same numbers):

``variant`` / ``seed`` the configuration a run replicates (its name without the ``-s<seed>``
                       suffix) and its seed; tables show mean ± std over a variant's seeds
``final`` / ``best``   primary metric (NER: strict entity F1; classification: macro F1), 0..1
``test_at_best``       with a validation split: the test metric of the round / epoch chosen on
                       validation (what tables and claims report; ``final`` otherwise)
``stopped_round``      the last round / epoch trained (a plateau stops before ``rounds``)
``gap_points``         ``score - centralized score`` of the same task, in points (x 100); a
                       centralized run that scored 0 (or failed) is never the reference
``mb``                 megabytes exchanged over the whole run, up + down (1 MB = 10^6 bytes)
``reduction``          ``1 - bytes / bytes of full FedAvg`` (measured, each over all the rounds it
                       trained; the FedAvg run of the same task, partition and seed where there
                       is one), blank for runs that exchange nothing
``analytic_reduction`` the run's own analytic figure (``fedskip comm``), when it reported one
``rounds_to_95``       first round/epoch reaching 95% of the run's best metric
``lora_rank`` … ``local_epochs`` what the run trained and sent: LoRA rank (0: whole blocks),
                       frozen A, the wire format (``none`` = fp32) and local epochs per round
``candidate``          the setting a run was trained with when the suite tries several and
                       keeps the one chosen on validation (:mod:`fedskip.bench.choice`)
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fedskip.bench.records import MB, RunRecord
from fedskip.bench.spread import Spread, spread
from fedskip.methods import BLOCKS, LORA, METHODS

REACH_FRACTION = 0.95


@dataclass
class ResultRow:
    name: str
    groups: str
    task: str
    method: str
    metric: str
    status: str
    variant: str = ""
    """The configuration this run replicates with another seed ("" = its own name)."""
    seed: int | None = None
    layers: int | None = None
    strategy: str = ""
    partition: str = ""
    target_epsilon: float | None = None
    final: float | None = None
    best: float | None = None
    test_at_best: float | None = None
    stopped_round: int | None = None
    gap_points: float | None = None
    mb: float | None = None
    reduction: float | None = None
    analytic_reduction: float | None = None
    rounds: int = 0
    rounds_to_95: int | None = None
    seconds: float | None = None
    epsilon: float | None = None
    privacy_unit: str = ""  # what ε is per: patient, note, example (dp=sample) or client
    lora_rank: int = 0
    lora_freeze_a: bool = False
    compression: str = ""
    """The wire format of its updates (``none`` = plain fp32; "" for a centralized run)."""
    local_epochs: int = 1
    candidate: str = ""
    """The setting it was trained with when it is one of several candidates of a
    configuration (chosen on validation: :mod:`fedskip.bench.choice`); "" otherwise."""
    extra: dict[str, Any] = field(default_factory=dict)
    spreads: dict[str, Spread] = field(default_factory=dict)
    """Set on a row that stands for several seeds (:func:`collapse_seeds`): per column."""

    @property
    def group(self) -> str:
        """The variant's name: what the seeds of one configuration share."""
        return self.variant or self.name

    @property
    def series(self) -> str:
        """The privacy group's variant (``layerskip``, ``layerskip-k4``, ``lora-fa``, ...: several
        share a method) where the run has one, else its method: one line of a plot."""
        return str(self.extra.get("privacy_variant") or self.method)

    @property
    def score(self) -> float | None:
        """The reported test metric: of the validation-chosen model when there is one, else
        the final one (nothing is ever picked on the test set)."""
        return self.test_at_best if self.test_at_best is not None else self.final

    @property
    def seeds(self) -> int:
        """How many seeds this row stands for."""
        found = self.spreads.get("score")
        return found.n if found is not None else 1


CSV_COLUMNS = [f for f in ResultRow.__dataclass_fields__ if f not in ("extra", "spreads")]


def trained_layers(record: RunRecord) -> int | None:
    """Blocks trained and exchanged per round: the first round's selection when the run logged
    one, else the summary's, else every block for a method that trains them all (FedAvg; LoRA,
    whose adapters sit in every block), else the ``layers`` setting."""
    for row in record.rows:
        if row.selected_layers:
            return len(row.selected_layers)
    selected = record.summary.get("selected_layers")
    if isinstance(selected, list) and selected and not isinstance(selected[0], list):
        return len(selected)
    blocks = record.summary.get("num_blocks")
    method = METHODS.get(record.method)
    if method is not None and method.trains != BLOCKS and isinstance(blocks, int):
        return blocks
    layers = record.setting("layers")
    return int(layers) if isinstance(layers, int) else None


def reference(records: Sequence[RunRecord], record: RunRecord, method: str) -> RunRecord | None:
    """The ``method`` run of the same task to compare ``record`` with: same partition (and α),
    no DP, the plain recipe (fp32 wire, one local epoch: not a frontier variation such as
    FedAvg with int8 deltas), most blocks (centralized full fine-tuning, not a same-blocks run)
    and the same seed preferred, in that order, else any complete one of that task."""
    same_task = [r for r in records if r.method == method and r.task == record.task and r.complete]

    def score(r: RunRecord) -> tuple[int, int, int, int, bool]:
        same_part = all(r.setting(k) == record.setting(k) for k in ("partition", "alpha"))
        no_dp = r.setting("dp", "none") == "none"
        plain = r.setting("compression", "none") == "none" and r.setting("local-epochs", 1) == 1
        layers = r.setting("layers", 0)  # full fine-tuning before a same-blocks centralized run
        same_seed = r.setting("seed") == record.setting("seed")
        blocks = layers if isinstance(layers, int) else 0
        return (int(same_part), int(no_dp), int(plain), blocks, same_seed)

    return max(same_task, key=score) if same_task else None


def build_rows(
    records: Sequence[RunRecord],
    groups: Mapping[str, Sequence[str]] | None = None,
    labels: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[ResultRow]:
    """One :class:`ResultRow` per record, in the given order."""
    rows = []
    for record in records:
        label = dict((labels or {}).get(record.name, {}))
        own = str(label.pop("candidate", ""))  # the labels of the run it stands in for
        label.pop("candidate_for", None)
        candidate = record.candidate or own
        row = ResultRow(
            name=record.name,
            groups=" ".join((groups or {}).get(record.name, [])),
            task=record.task,
            method=record.method,
            metric=record.metric_name,
            status="done" if record.complete else "incomplete",
            variant=str(label.pop("variant", "")),
            seed=_int_or_none(record.setting("seed")),
            layers=trained_layers(record),
            strategy=str(record.setting("layer-strategy", "")),
            partition=str(label.get("partition") or _partition_label(record)),
            target_epsilon=_target_epsilon(record),
            final=record.final,
            best=record.best,
            test_at_best=record.summary.number("test_at_best"),
            stopped_round=_int_or_none(record.summary.get("stopped_round")),
            mb=record.total_bytes / MB,
            analytic_reduction=record.reported_reduction,
            rounds=record.rounds,
            rounds_to_95=record.rounds_to_fraction(REACH_FRACTION),
            seconds=record.seconds,
            epsilon=record.epsilon,
            privacy_unit=str(record.summary.get("privacy_unit") or ""),
            lora_rank=_lora_rank(record),
            lora_freeze_a=bool(record.setting("lora-freeze-a", False)),
            compression=_wire(record),
            local_epochs=_int_or_none(record.setting("local-epochs")) or 1,
            candidate=candidate,
            extra=label,
        )
        scored = [r for r in records if (_score(r) or 0.0) > 0.0]  # a run that scored 0
        central = reference(scored, record, "centralized")  # is no reference for a gap
        central_score = None if central is None else _score(central)
        if central_score is not None and row.score is not None:
            row.gap_points = 100.0 * (row.score - central_score)
        fedavg = reference(records, record, "fedavg")
        if fedavg is not None and fedavg.total_bytes > 0 and record.total_bytes > 0:
            row.reduction = 1.0 - record.total_bytes / fedavg.total_bytes
        rows.append(row)
    return rows


def _score(record: RunRecord) -> float | None:
    """A record's reported metric (:attr:`ResultRow.score`)."""
    chosen = record.summary.number("test_at_best")
    return chosen if chosen is not None else record.final


def _lora_rank(record: RunRecord) -> int:
    """The rank of the LoRA adapters the run trained (0: none; a ``lora-rank`` setting that its
    method ignores is not counted)."""
    kind = METHODS.get(record.method)
    rank = _int_or_none(record.setting("lora-rank")) or 0
    return rank if kind is not None and (kind.trains == LORA or kind.lora_in_blocks) else 0


def _wire(record: RunRecord) -> str:
    """The wire format the run's updates travelled in: ``summary.json``'s ``wire_compression``
    (``compression=auto`` resolved by the run itself), else the ``compression`` setting; "" for
    a method that sends nothing (centralized, local-only)."""
    kind = METHODS.get(record.method)
    if kind is None or not kind.federated:
        return ""
    return str(record.summary.get("wire_compression") or record.setting("compression", ""))


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


SPREAD_COLUMNS = (
    "score",
    "final",
    "best",
    "test_at_best",
    "gap_points",
    "mb",
    "reduction",
    "stopped_round",
    "rounds_to_95",
    "seconds",
)
"""The numbers a seed-collapsed row averages (mean ± std over its seeds): every number its
table shows, so that no cell of a mean row is one seed's value."""


def collapse_seeds(rows: Sequence[ResultRow]) -> list[ResultRow]:
    """One row per variant (in first-seen order): a variant run with one seed is its row as is;
    with several, a row named after the variant whose numbers are the means over the seeds and
    whose :attr:`ResultRow.spreads` hold each column's :class:`Spread`."""
    groups: dict[str, list[ResultRow]] = {}
    for row in rows:
        groups.setdefault(row.group, []).append(row)
    out = []
    for name, members in groups.items():
        if len(members) == 1:
            out.append(members[0])
            continue
        first = members[0]
        merged = ResultRow(**{**asdict(first), "name": name, "variant": "", "seed": None})
        merged.extra = dict(first.extra)
        for column in SPREAD_COLUMNS:
            values = [getattr(m, column) for m in members]
            known = [float(v) for v in values if v is not None]
            if len(known) != len(values) or not known:
                continue
            found = spread(known)
            merged.spreads[column] = found
            if column != "score":
                setattr(merged, column, found.mean)
        if "test_at_best" not in merged.spreads:  # some seeds without: report the scores
            merged.test_at_best = None
            if "score" in merged.spreads:
                merged.final = merged.spreads["score"].mean
        out.append(merged)
    return out


def _partition_label(record: RunRecord) -> str:
    scheme = str(record.setting("partition", ""))
    if scheme == "dirichlet":
        return f"dir{float(record.setting('alpha', 0.0)):g}"
    return scheme


def _target_epsilon(record: RunRecord) -> float | None:
    if record.setting("dp", "none") == "none":
        return None
    value = record.setting("target-epsilon")
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


# --------------------------------------------------------------------------- output
def write_csv(rows: Sequence[ResultRow], path: Path) -> Path:
    """``results.csv``: :data:`CSV_COLUMNS`, numbers unrounded, blanks for missing values."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            values = asdict(row)
            values.pop("extra")
            values.pop("spreads")
            writer.writerow({k: "" if v is None else v for k, v in values.items()})
    return path


def fmt(value: float | None, spec: str = ".3f", *, pct: bool = False, signed: bool = False) -> str:
    """A table cell: blank-dash for missing values, ``pct`` multiplies by 100 and adds %."""
    if value is None:
        return "–"
    if pct:
        return f"{100 * value:{'+' if signed else ''}.1f}%"
    return f"{value:{'+' if signed else ''}{spec}}"


def fmt_mb(value: float | None) -> str:
    """Megabytes with precision that suits the size (0.004, 3.6, 1234)."""
    if value is None:
        return "–"
    return f"{value:{mb_spec(value)}}"


def mb_spec(value: float) -> str:
    """The format :func:`fmt_mb` gives ``value`` megabytes: 0, 1 or 3 decimals by size."""
    return ".0f" if value >= 100 else ".1f" if value >= 1 else ".3f"


def with_spread(
    row: ResultRow, column: str, text: str, spec: str = ".3f", *, scale: float = 1.0
) -> str:
    """``text`` (the mean), followed by `` ± std`` (times ``scale``: 100 for a percentage)
    when ``row`` stands for several seeds."""
    found = row.spreads.get(column)
    if found is None or found.std is None:
        return text
    return f"{text} ± {scale * found.std:{spec}}"


def fmt_count(row: ResultRow, column: str) -> str:
    """A round count: ``16`` for one run, ``14.7 ± 1.5`` (mean ± std) for several seeds."""
    value = getattr(row, column)
    if value is None:
        return "–"
    found = row.spreads.get(column)
    if found is None or found.std is None:
        return f"{value:g}"
    return f"{found.mean:.1f} ± {found.std:.1f}"


def with_optional_columns(rows: Sequence[ResultRow], columns: Sequence[str]) -> list[str]:
    """``columns`` plus ``seeds`` (after the first) when a row stands for several seeds and
    ``stopped`` (before ``s``, else last) when a run stopped at a plateau's round: tables of
    single-seed runs without validation look as they always did."""
    out = list(columns)
    if any(r.seeds > 1 for r in rows) and "seeds" not in out:
        out.insert(1, "seeds")
    if any(r.stopped_round is not None for r in rows) and "stopped" not in out:
        out.insert(out.index("s") if "s" in out else len(out), "stopped")
    return out


def markdown_table(rows: Sequence[ResultRow], columns: Sequence[str] | None = None) -> str:
    """A Markdown table of ``rows`` (metric 0..1 as 3 decimals, gap in points, MB, reduction);
    a row standing for several seeds (:func:`collapse_seeds`) shows mean ± std and its seed
    count. ``final`` is the reported metric (:attr:`ResultRow.score`)."""
    cells = {
        "run": lambda r: f"`{r.name}`",
        "method": lambda r: r.method,
        "privacy variant": lambda r: r.series,
        "task": lambda r: r.task,
        "k": lambda r: "" if r.layers is None else str(r.layers),
        "partition": lambda r: r.partition,
        "strategy": lambda r: r.strategy,
        "ε target": lambda r: "–" if r.target_epsilon is None else f"{r.target_epsilon:g}",
        "ε spent": lambda r: (
            fmt(r.epsilon, ".2f")
            + (f" per {r.privacy_unit}" if r.privacy_unit and r.epsilon is not None else "")
        ),
        "final": lambda r: with_spread(r, "score", fmt(r.score)),
        "best": lambda r: with_spread(r, "best", fmt(r.best)),
        "gap (pts)": lambda r: with_spread(
            r, "gap_points", fmt(r.gap_points, ".1f", signed=True), ".1f"
        ),
        "seeds": lambda r: str(r.seeds),
        "stopped": lambda r: fmt_count(r, "stopped_round"),
        "MB": lambda r: fmt_mb(r.mb),
        "reduction": lambda r: fmt(r.reduction, pct=True),
        "rounds to 95%": lambda r: fmt_count(r, "rounds_to_95"),
        "s": lambda r: fmt(r.seconds, ".0f"),
    }
    columns = with_optional_columns(
        rows,
        columns
        or ["run", "method", "final", "best", "gap (pts)", "MB", "reduction", "rounds to 95%", "s"],
    )
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(cells[c](row) for c in columns) + " |")
    return "\n".join(lines)
