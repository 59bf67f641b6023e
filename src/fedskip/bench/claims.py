"""The paper's claims, checked on a suite's own results.

Each check reads the results table (never a stored number) and returns a :class:`Claim`:
``held`` True / False, or None when the suite did not run what the claim needs. The
thresholds below are how we read the paper's wording; they are printed with every verdict.

1. Communication: layer skipping exchanges about 70% less than full FedAvg
   (held when the measured reduction is at least :data:`COMM_REDUCTION` - :data:`COMM_TOLERANCE`).
2. Accuracy: within 2% of centralized training (held when the final metric is at most
   :data:`CENTRAL_GAP_POINTS` points below the centralized run of the same task).
3. Baselines: layer skipping's final metric is at least that of every baseline run
   (FedAvg, FedProx, LoRA, local-only) of the same task.
4. Non-IID: going from IID to the most skewed partition costs layer skipping at most
   :data:`NONIID_MAX_DROP` points.
5. Privacy: with DP-SGD at the loosest ε of the sweep layer skipping loses at most
   :data:`DP_MAX_DROP` points against its run without DP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fedskip.bench.table import ResultRow

COMM_REDUCTION = 0.70
COMM_TOLERANCE = 0.05
CENTRAL_GAP_POINTS = 2.0
NONIID_MAX_DROP = 5.0
DP_MAX_DROP = 5.0
BASELINES = ("fedavg", "fedprox", "lora", "local")
OURS = "layerskip"
EPS = 1e-9
"""Float slack for threshold comparisons (0.88 - 0.90 is -2.0000000000000018 points)."""


@dataclass(frozen=True)
class Claim:
    title: str
    held: bool | None
    evidence: str

    @property
    def verdict(self) -> str:
        return {True: "held", False: "not held", None: "not tested"}[self.held]


def _method_row(rows: Sequence[ResultRow], task: str, method: str) -> ResultRow | None:
    """The ``methods``-group run of ``method`` on ``task`` (the headline comparison)."""
    for row in rows:
        in_methods = "methods" in row.groups.split()
        if row.task == task and row.method == method and in_methods and row.final is not None:
            return row
    return None


def _tasks(rows: Sequence[ResultRow]) -> list[str]:
    return sorted({r.task for r in rows if _method_row(rows, r.task, OURS)})


def _all(verdicts: Sequence[bool]) -> bool | None:
    return all(verdicts) if verdicts else None


def check_communication(rows: Sequence[ResultRow]) -> Claim:
    verdicts, notes = [], []
    for task in _tasks(rows):
        ours = _method_row(rows, task, OURS)
        full = _method_row(rows, task, "fedavg")
        if ours is None or full is None or ours.reduction is None:
            continue
        ok = ours.reduction >= COMM_REDUCTION - COMM_TOLERANCE - EPS
        verdicts.append(ok)
        analytic = (
            f", analytic {100 * ours.analytic_reduction:.1f}%"
            if ours.analytic_reduction is not None
            else ""
        )
        notes.append(
            f"{task}: {ours.mb:.1f} MB vs FedAvg {full.mb:.1f} MB → "
            f"{100 * ours.reduction:.1f}% less (measured{analytic}, k={ours.layers})"
        )
    rule = f"held when ≥ {100 * (COMM_REDUCTION - COMM_TOLERANCE):.0f}% less"
    return Claim("≈70% less communication than full FedAvg", _all(verdicts), _join(notes, rule))


def check_centralized_gap(rows: Sequence[ResultRow]) -> Claim:
    verdicts, notes = [], []
    for task in _tasks(rows):
        ours = _method_row(rows, task, OURS)
        central = _method_row(rows, task, "centralized")
        if ours is None or central is None or ours.gap_points is None:
            continue
        verdicts.append(ours.gap_points >= -CENTRAL_GAP_POINTS - EPS)
        notes.append(
            f"{task}: {ours.metric} {ours.final:.3f} vs centralized {central.final:.3f} "
            f"({ours.gap_points:+.1f} points, {_relative(ours.final, central.final)} relative)"
        )
    rule = f"held when at most {CENTRAL_GAP_POINTS:g} points below centralized"
    return Claim("within 2% of centralized training", _all(verdicts), _join(notes, rule))


def check_baselines(rows: Sequence[ResultRow]) -> Claim:
    verdicts, notes = [], []
    for task in _tasks(rows):
        ours = _method_row(rows, task, OURS)
        assert ours is not None and ours.final is not None
        compared = []
        for method in BASELINES:
            other = _method_row(rows, task, method)
            if other is None or other.final is None:
                continue
            won = ours.final >= other.final - EPS
            verdicts.append(won)
            compared.append(f"{method} {other.final:.3f} ({'≤' if won else '>'})")
        if compared:
            notes.append(f"{task}: layerskip {ours.final:.3f} vs " + ", ".join(compared))
    rule = "held when layer skipping ≥ every baseline on every task"
    return Claim("beats the baselines", _all(verdicts), _join(notes, rule))


def _axis_rows(rows: Sequence[ResultRow], group: str, method: str) -> list[ResultRow]:
    return [
        r for r in rows if r.method == method and group in r.groups.split() and r.final is not None
    ]


def _lower(drop: float) -> str:
    """``drop`` points (IID minus worst skewed partition) in words: lower, or higher when < 0."""
    return f"{drop:.1f} points lower" if drop >= 0 else f"{-drop:.1f} points higher"


def check_noniid(rows: Sequence[ResultRow]) -> Claim:
    ours = _axis_rows(rows, "noniid", OURS)
    iid = next((r for r in ours if r.extra.get("partition") == "iid"), None)
    skewed = [r for r in ours if r.extra.get("partition") not in (None, "iid")]
    if iid is None or not skewed or iid.final is None:
        return Claim("robust to non-IID data", None, "needs the IID and non-IID layerskip runs")
    worst = min(skewed, key=lambda r: r.final or 0.0)
    drop = 100.0 * (iid.final - (worst.final or 0.0))
    notes = [
        f"layerskip IID {iid.final:.3f}, worst {worst.extra.get('partition')} "
        f"{worst.final:.3f} ({_lower(drop)})"
    ]
    fed = _axis_rows(rows, "noniid", "fedavg")
    fed_iid = next((r for r in fed if r.extra.get("partition") == "iid"), None)
    fed_skewed = [r for r in fed if r.extra.get("partition") not in (None, "iid")]
    if fed_iid is not None and fed_skewed and fed_iid.final is not None:
        fed_worst = min(fed_skewed, key=lambda r: r.final or 0.0)
        fed_drop = 100.0 * (fed_iid.final - (fed_worst.final or 0.0))
        notes.append(f"FedAvg for comparison: {_lower(fed_drop)}")
    rule = f"held when the drop is at most {NONIID_MAX_DROP:g} points"
    return Claim("robust to non-IID data", drop <= NONIID_MAX_DROP + EPS, _join(notes, rule))


def check_privacy(rows: Sequence[ResultRow]) -> Claim:
    ours = _axis_rows(rows, "privacy", OURS)
    plain = next((r for r in ours if r.target_epsilon is None), None)
    private = sorted(
        (r for r in ours if r.target_epsilon is not None),
        key=lambda r: -(r.target_epsilon or 0.0),
    )
    if plain is None or not private or plain.final is None:
        return Claim(
            "robust with differential privacy", None, "needs layerskip with and without DP"
        )
    loosest = private[0]
    drop = 100.0 * (plain.final - (loosest.final or 0.0))
    each = ", ".join(
        f"ε={r.target_epsilon:g}: {r.final:.3f}"
        + (f" (spent {r.epsilon:.2f})" if r.epsilon is not None else "")
        for r in private
    )
    notes = [f"layerskip no DP {plain.final:.3f}; {each}"]
    rule = f"held when ε={loosest.target_epsilon:g} loses at most {DP_MAX_DROP:g} points"
    return Claim("robust with differential privacy", drop <= DP_MAX_DROP + EPS, _join(notes, rule))


def check_claims(rows: Sequence[ResultRow]) -> list[Claim]:
    """Every claim, in the paper's order."""
    return [
        check_communication(rows),
        check_centralized_gap(rows),
        check_baselines(rows),
        check_noniid(rows),
        check_privacy(rows),
    ]


def _relative(value: float | None, reference: float | None) -> str:
    if value is None or not reference:
        return "–"
    return f"{100 * (value / reference - 1):+.1f}%"


def _join(notes: Sequence[str], rule: str) -> str:
    if not notes:
        return f"not measured ({rule})"
    return "; ".join(notes) + f" — {rule}"


def claims_markdown(claims: Sequence[Claim]) -> str:
    lines = ["| claim | on our data | numbers |", "|---|---|---|"]
    for claim in claims:
        lines.append(f"| {claim.title} | **{claim.verdict}** | {claim.evidence} |")
    return "\n".join(lines)
