"""The paper's claims, checked on a suite's own results.

Each check reads the results table (never a stored number) and returns a :class:`Claim`:
``held`` True / False, or None when the suite did not run what the claim needs — or when the
claim is **inconclusive**: with several seeds per run, a claim that compares a difference with
a threshold reads held / not held only when the difference clears the threshold by more than
the seed spread (:func:`fedskip.bench.spread.verdict`), else inconclusive. Runs with one seed
are compared plainly (their spread is unknown; the evidence then shows no ± figure). Every
metric is the run's reported one (:attr:`~fedskip.bench.table.ResultRow.score`: the test metric
of the validation-chosen model when the run had a validation split). The thresholds below are
how we read the paper's wording; they are printed with every verdict.

1. Communication: layer skipping exchanges about 70% less than full FedAvg
   (held when the measured reduction is at least :data:`COMM_REDUCTION` - :data:`COMM_TOLERANCE`).
2. Accuracy: within 2% of centralized training (held when the metric is at most
   :data:`CENTRAL_GAP_POINTS` points below the centralized full fine-tuning run of the same
   task), judged apart for its two parts:

   * the **federation gap**: layer skipping versus centralized training of the *same blocks*
     (``gaps`` group: ``method=centralized``, ``layers=k``) — what federating costs;
   * the **capacity gap**: centralized training of the same blocks versus centralized full
     fine-tuning — what training only k blocks costs.
3. Baselines: layer skipping's metric is at least that of every baseline run
   (FedAvg, FedProx, LoRA, local-only) of the same task.
4. Non-IID: going from IID to the most skewed partition costs layer skipping at most
   :data:`NONIID_MAX_DROP` points.
5. Privacy: with DP-SGD at the loosest ε of the sweep layer skipping loses at most
   :data:`DP_MAX_DROP` points against its run without DP.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fedskip.bench.spread import HELD, INCONCLUSIVE, NOT_HELD, Spread, spread, verdict
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
    outcome: str = ""
    """``inconclusive`` when the seed spread decides nothing (``held`` is then None)."""

    @property
    def verdict(self) -> str:
        if self.outcome:
            return self.outcome
        return {True: HELD, False: NOT_HELD, None: "not tested"}[self.held]


def _replicas(
    rows: Sequence[ResultRow], task: str, method: str, group: str = "methods"
) -> list[ResultRow]:
    """Every seed of the first ``group`` run of ``method`` on ``task`` that has a score."""
    chosen = [
        r
        for r in rows
        if r.task == task and r.method == method and group in r.groups.split()
        if r.score is not None
    ]
    return [r for r in chosen if r.group == chosen[0].group] if chosen else []


def _ours(rows: Sequence[ResultRow], task: str, k: int | None = None) -> list[ResultRow]:
    """Layer skipping's seeds on ``task``: the ``methods``-group run (the suite's default k), or
    with ``k`` the ``layers``-axis run that trains k blocks."""
    if k is None:
        return _replicas(rows, task, OURS)
    chosen = [
        r
        for r in rows
        if r.task == task and r.method == OURS and "layers" in r.groups.split()
        if r.layers == k and r.score is not None
    ]
    return [r for r in chosen if r.group == chosen[0].group] if chosen else []


def _spread(rows: Sequence[ResultRow]) -> Spread:
    return spread([r.score for r in rows if r.score is not None])


def _show(side: Spread) -> str:
    """``0.850`` (one seed) or ``0.850 ± 0.010`` (mean ± std over seeds)."""
    return side.format(1.0, 3)


def _judge(points: float, threshold: float, sides: Sequence[Spread]) -> tuple[str, str]:
    """(outcome, ``± s`` text) of the claim ``points <= threshold`` (both in points)."""
    outcome, s = verdict(points / 100 - EPS, threshold / 100, sides, single_seed_ok=True)
    return outcome, ("" if s is None else f" ± {100 * s:.1f}")


def _combine(outcomes: Sequence[str]) -> tuple[bool | None, str]:
    """(held, outcome) over tasks: not held if any is, else inconclusive if any is, else held."""
    if not outcomes:
        return None, ""
    if NOT_HELD in outcomes:
        return False, ""
    if INCONCLUSIVE in outcomes:
        return None, INCONCLUSIVE
    return True, ""


def _tasks(rows: Sequence[ResultRow], k: int | None = None) -> list[str]:
    return sorted({r.task for r in rows if _ours(rows, r.task, k)})


def _all(verdicts: Sequence[bool]) -> bool | None:
    return all(verdicts) if verdicts else None


def check_communication(rows: Sequence[ResultRow], k: int | None = None) -> Claim:
    """Layer skipping's measured reduction against FedAvg: the mean over its seeds (each seed
    against FedAvg of the same seed), with the MB of both sides as means over seeds."""
    verdicts, notes = [], []
    for task in _tasks(rows, k):
        ours = [r for r in _ours(rows, task, k) if r.reduction is not None]
        full = [r for r in _replicas(rows, task, "fedavg") if r.mb is not None]
        if not ours or not full:
            continue
        reduction = spread([r.reduction for r in ours if r.reduction is not None]).mean
        ok = reduction >= COMM_REDUCTION - COMM_TOLERANCE - EPS
        verdicts.append(ok)
        analytic = (
            f", analytic {100 * ours[0].analytic_reduction:.1f}%"
            if ours[0].analytic_reduction is not None
            else ""
        )
        seeds = f", mean of {len(ours)} seeds" if len(ours) > 1 else ""
        notes.append(
            f"{task}: {_mean_mb(ours):.1f} MB vs FedAvg {_mean_mb(full):.1f} MB → "
            f"{100 * reduction:.1f}% less (measured{seeds}{analytic}, k={ours[0].layers})"
        )
    rule = f"held when ≥ {100 * (COMM_REDUCTION - COMM_TOLERANCE):.0f}% less"
    return Claim("≈70% less communication than full FedAvg", _all(verdicts), _join(notes, rule))


def _mean_mb(rows: Sequence[ResultRow]) -> float:
    return spread([r.mb for r in rows if r.mb is not None]).mean


def check_centralized_gap(rows: Sequence[ResultRow], k: int | None = None) -> Claim:
    outcomes, notes = [], []
    for task in _tasks(rows, k):
        ours, central = _ours(rows, task, k), _replicas(rows, task, "centralized")
        if not ours or not central:
            continue
        a, b = _spread(ours), _spread(central)
        gap = 100.0 * (a.mean - b.mean)
        outcome, pm = _judge(-gap, CENTRAL_GAP_POINTS, [a, b])
        outcomes.append(outcome)
        notes.append(
            f"{task}: {ours[0].metric} {_show(a)} vs centralized {_show(b)} "
            f"({gap:+.1f}{pm} points, {_relative(a.mean, b.mean)} relative)"
        )
    rule = f"held when at most {CENTRAL_GAP_POINTS:g} points below centralized"
    held, outcome = _combine(outcomes)
    return Claim("within 2% of centralized training", held, _join(notes, rule), outcome)


GAPS = "gaps"
"""The suite group of centralized runs that train the same blocks as a layer-skipping k."""


def _same_blocks(
    rows: Sequence[ResultRow], task: str, k: int | None, strategy: str = "top"
) -> list[ResultRow]:
    """Every seed of the centralized ``gaps`` run of ``task`` that trains ``k`` blocks chosen
    by ``strategy``."""
    chosen = [
        r
        for r in rows
        if r.task == task and r.method == "centralized" and GAPS in r.groups.split()
        if r.layers == k and r.strategy == strategy and r.score is not None
    ]
    return [r for r in chosen if r.group == chosen[0].group] if chosen else []


def _ours_and_same_blocks(
    rows: Sequence[ResultRow], task: str, k: int | None = None
) -> tuple[list[ResultRow], list[ResultRow]]:
    """Layer skipping's seeds on ``task`` (:func:`_ours`) and the centralized runs of the same
    blocks."""
    ours = _ours(rows, task, k)
    if not ours:
        return ours, []
    return ours, _same_blocks(rows, task, ours[0].layers, ours[0].strategy)


def check_federation_gap(rows: Sequence[ResultRow], k: int | None = None) -> Claim:
    """Layer skipping versus centralized training of the same blocks (what federating costs)."""

    def pair(task: str) -> tuple[list[ResultRow], list[ResultRow]] | None:
        ours, same = _ours_and_same_blocks(rows, task, k)
        return (ours, same) if ours and same else None

    return _gap_claim(
        _tasks(rows, k),
        pair,
        ("federated", "centralized same blocks"),
        "federation gap: within 2 points of centralized, same blocks",
        f"held when at most {CENTRAL_GAP_POINTS:g} points below centralized, same blocks",
    )


def check_capacity_gap(rows: Sequence[ResultRow], k: int | None = None) -> Claim:
    """Centralized training of layer skipping's blocks versus centralized full fine-tuning
    (what training only k blocks costs, federation aside)."""

    def pair(task: str) -> tuple[list[ResultRow], list[ResultRow]] | None:
        same = _ours_and_same_blocks(rows, task, k)[1]
        full = _replicas(rows, task, "centralized")
        return (same, full) if same and full else None

    return _gap_claim(
        _tasks(rows, k),
        pair,
        ("centralized same blocks", "full"),
        "capacity gap: k blocks within 2 points of full fine-tuning (centralized)",
        f"held when k blocks are at most {CENTRAL_GAP_POINTS:g} points below all blocks",
    )


def _gap_claim(
    tasks: Sequence[str],
    pair: Callable[[str], tuple[list[ResultRow], list[ResultRow]] | None],
    names: tuple[str, str],
    title: str,
    rule: str,
) -> Claim:
    """Per task of ``tasks``, ``pair(task)`` = (measured replicas, reference replicas) or None:
    held when the measured mean is at most :data:`CENTRAL_GAP_POINTS` below the reference's,
    inconclusive when the difference is inside the seeds' spread."""
    outcomes, notes = [], []
    for task in tasks:
        runs = pair(task)
        if runs is None:
            continue
        a, b = _spread(runs[0]), _spread(runs[1])
        gap = 100.0 * (a.mean - b.mean)
        outcome, pm = _judge(-gap, CENTRAL_GAP_POINTS, [a, b])
        outcomes.append(outcome)
        notes.append(
            f"{task} k={runs[0][0].layers}: {names[0]} {_show(a)} vs {names[1]} "
            f"{_show(b)} ({gap:+.1f}{pm} points)"
        )
    held, outcome = _combine(outcomes)
    return Claim(title, held, _join(notes, rule), outcome)


PARTLY_TESTED = "partly tested"
"""A claim over several baselines of which some were not run (and none beat layer skipping)."""


def check_baselines(rows: Sequence[ResultRow], k: int | None = None) -> Claim:
    """Layer skipping against every baseline of :data:`BASELINES` on every task; held only when
    all of them ran (else "partly tested", naming the missing ones, unless one already beats
    it)."""
    outcomes, notes, missing = [], [], []
    for task in _tasks(rows, k):
        ours = _spread(_ours(rows, task, k))
        compared = []
        for method in BASELINES:
            others = _replicas(rows, task, method)
            if not others:
                missing.append(f"{task} {method}")
                continue
            other = _spread(others)
            outcome, pm = _judge(100.0 * (other.mean - ours.mean), 0.0, [ours, other])
            outcomes.append(outcome)
            mark = {HELD: "≤", NOT_HELD: ">"}.get(outcome, "≈")
            compared.append(f"{method} {_show(other)} ({mark})")
        if compared:
            notes.append(f"{task}: layerskip {_show(ours)} vs " + ", ".join(compared))
    rule = "held when layer skipping ≥ every baseline on every task"
    held, outcome = _combine(outcomes)
    if missing and held is not False and outcomes:
        held, outcome = None, PARTLY_TESTED
        notes.append("not run: " + ", ".join(missing))
    return Claim("beats the baselines", held, _join(notes, rule), outcome)


def _axis_rows(rows: Sequence[ResultRow], group: str, method: str) -> list[ResultRow]:
    return [
        r for r in rows if r.method == method and group in r.groups.split() and r.score is not None
    ]


def _lower(drop: float) -> str:
    """``drop`` points (IID minus worst skewed partition) in words: lower, or higher when < 0."""
    return f"{drop:.1f} points lower" if drop >= 0 else f"{-drop:.1f} points higher"


def check_noniid(rows: Sequence[ResultRow]) -> Claim:
    ours = _axis_rows(rows, "noniid", OURS)
    iid = next((r for r in ours if r.extra.get("partition") == "iid"), None)
    skewed = [r for r in ours if r.extra.get("partition") not in (None, "iid")]
    if iid is None or not skewed or iid.score is None:
        return Claim("robust to non-IID data", None, "needs the IID and non-IID layerskip runs")
    worst = min(skewed, key=lambda r: r.score or 0.0)
    drop = 100.0 * (iid.score - (worst.score or 0.0))
    notes = [
        f"layerskip IID {iid.score:.3f}, worst {worst.extra.get('partition')} "
        f"{worst.score:.3f} ({_lower(drop)})"
    ]
    fed = _axis_rows(rows, "noniid", "fedavg")
    fed_iid = next((r for r in fed if r.extra.get("partition") == "iid"), None)
    fed_skewed = [r for r in fed if r.extra.get("partition") not in (None, "iid")]
    if fed_iid is not None and fed_skewed and fed_iid.score is not None:
        fed_worst = min(fed_skewed, key=lambda r: r.score or 0.0)
        fed_drop = 100.0 * (fed_iid.score - (fed_worst.score or 0.0))
        notes.append(f"FedAvg for comparison: {_lower(fed_drop)}")
    rule = f"held when the drop is at most {NONIID_MAX_DROP:g} points"
    return Claim("robust to non-IID data", drop <= NONIID_MAX_DROP + EPS, _join(notes, rule))


def check_privacy(rows: Sequence[ResultRow]) -> Claim:
    """Layer skipping at the suite's default k (privacy variant ``layerskip``; its other
    variants, k = 4 or LoRA inside the blocks, are not this claim's runs)."""
    ours = [r for r in _axis_rows(rows, "privacy", OURS) if r.series == OURS]
    plain = next((r for r in ours if r.target_epsilon is None), None)
    private = sorted(
        (r for r in ours if r.target_epsilon is not None),
        key=lambda r: -(r.target_epsilon or 0.0),
    )
    if plain is None or not private or plain.score is None:
        return Claim(
            "robust with differential privacy", None, "needs layerskip with and without DP"
        )
    loosest = private[0]
    drop = 100.0 * (plain.score - (loosest.score or 0.0))
    each = ", ".join(
        f"ε={r.target_epsilon:g}: {r.score:.3f}"
        + (f" (spent {r.epsilon:.2f})" if r.epsilon is not None else "")
        for r in private
    )
    notes = [f"layerskip no DP {plain.score:.3f}; {each}"]
    rule = f"held when ε={loosest.target_epsilon:g} loses at most {DP_MAX_DROP:g} points"
    return Claim("robust with differential privacy", drop <= DP_MAX_DROP + EPS, _join(notes, rule))


def check_claims(rows: Sequence[ResultRow]) -> list[Claim]:
    """Every claim, in the paper's order."""
    return [
        check_communication(rows),
        check_centralized_gap(rows),
        check_federation_gap(rows),
        check_capacity_gap(rows),
        check_baselines(rows),
        check_noniid(rows),
        check_privacy(rows),
    ]


def half_the_blocks(rows: Sequence[ResultRow]) -> int | None:
    """The paper's operating point on this model: half its blocks (LLaMA 3.2-1B: 8 of 16;
    MiniLM: 3 of 6), from the blocks FedAvg trains; None without a FedAvg run."""
    blocks = [r.layers for r in rows if r.method == "fedavg" and r.layers]
    return max(blocks) // 2 if blocks else None


def check_claims_at(rows: Sequence[ResultRow], k: int) -> list[Claim]:
    """The claims that rest on layer skipping's own runs, judged on the layer axis's run of
    ``k`` blocks (its seeds) instead of the methods group's: communication, within 2 % of
    centralized, the federation and capacity gaps, the baselines. Non-IID and privacy were
    run at the suite's default k only."""
    suffix = f" (k = {k})"
    claims = [
        check_communication(rows, k),
        check_centralized_gap(rows, k),
        check_federation_gap(rows, k),
        check_capacity_gap(rows, k),
        check_baselines(rows, k),
    ]
    return [dataclasses.replace(c, title=c.title + suffix) for c in claims]


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
