"""The frontier of a suite folder: the reported score against traffic and against compute.

Which configuration buys the most accuracy for the bytes a site may send, or for the compute it
has? The candidates (:func:`frontier_candidates`) are the suite's federated runs of the task its
``frontier`` group ran on, at the natural partition and without DP — the methods (FedAvg,
FedProx, LoRA, layer skipping), the layer axis, the layer strategies and the ``frontier``
group's variations of them (wire format, LoRA rank and frozen A, LoRA inside the selected
blocks, local epochs: :data:`fedskip.bench.groups.PAPER_FRONTIER`) — each one row, the mean
over its seeds.

A configuration is on the **traffic front** when no other scores at least as well with at most
its megabytes over the run (and is better in one of the two); on the **compute front** likewise
with its wall seconds per run (the four clients simulated on one machine, as many at once as it
has cores, at most four: the compute of the whole federation, not of one site). Dominance compares the seed means; a front point with
fewer than :data:`FRONT_SEEDS` seeds is flagged, its place provisional.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fedskip.bench.spec import NATURAL
from fedskip.bench.table import ResultRow, fmt, fmt_mb, mb_spec, with_spread
from fedskip.methods import METHODS

FRONT_SEEDS = 3
"""Seeds a point on the front needs before its place counts (issue #36)."""

FRONTIER_GROUPS = frozenset({"methods", "layers", "strategies", "frontier"})
"""The groups whose runs are frontier candidates."""

FRONTIER_PNG = "frontier.png"

SCORE_BAND = 0.1
"""The plot's score axis spans this much below the best score, in the metric's 0–1 units (0.1 =
10 points); a point further
down is drawn on the axis's floor as a down-pointing marker labelled with its score, so one
weak configuration does not flatten the band where the front is."""


def describe_config(row: ResultRow) -> str:
    """What a run trained and sent, in words: ``k=2, LoRA r=8, int8, 4 local epochs``,
    ``LoRA r=8 in every block, fp32``, ``full-model FedAvg, fp32``."""
    if row.method == "centralized":
        return "centralized (pooled data)"
    if row.method == "local":
        return "local-only"
    adapters = f"LoRA r={row.lora_rank}" + (" frozen A" if row.lora_freeze_a else "")
    if row.method in ("fedavg", "fedprox"):
        parts = ["full-model " + {"fedavg": "FedAvg", "fedprox": "FedProx"}[row.method]]
    elif row.method == "lora":
        parts = [f"{adapters} in every block"]
    else:
        parts = [f"k={row.layers}"]
        if row.strategy and row.strategy != "top":
            parts.append(f"{row.strategy} selection")
        if row.lora_rank:
            parts.append(adapters)
    parts.append(wire_name(row.compression))
    if row.local_epochs != 1:
        parts.append(f"{row.local_epochs} local epochs")
    return ", ".join(parts)


def wire_name(compression: str) -> str:
    """``none`` (or unset) is plain ``fp32``; ``auto`` stays ``auto`` (a record without the
    resolved ``wire_compression``: ``auto`` meant fp16 until 2026-12-07 and int8 since)."""
    if compression in ("", "none"):
        return "fp32"
    return compression


def frontier_candidates(rows: Sequence[ResultRow]) -> list[ResultRow]:
    """The rows (seed-collapsed) that compete on the frontier: see the module docstring. A run
    that moved no bytes (or has no score) has no place on it and is left out."""
    tasks = {r.task for r in rows if "frontier" in r.groups.split()}
    out = []
    for row in rows:
        kind = METHODS.get(row.method)
        if (
            row.task in tasks
            and kind is not None
            and kind.federated
            and row.target_epsilon is None
            and row.partition == NATURAL.label
            and FRONTIER_GROUPS & set(row.groups.split())
            and row.score is not None
            and row.mb
        ):
            out.append(row)
    return out


def front(rows: Sequence[ResultRow], cost: Callable[[ResultRow], float | None]) -> set[str]:
    """Names of the rows no other row dominates: a higher or equal score at a lower or equal
    ``cost``, better in one of the two (seed means)."""
    priced = [(r, cost(r), r.score) for r in rows]
    known = [(r, c, s) for r, c, s in priced if c is not None and s is not None]
    out = set()
    for row, c, s in known:
        if not any(
            q is not row and qs >= s and qc <= c and (qs > s or qc < c) for q, qc, qs in known
        ):
            out.add(row.name)
    return out


def _mb(row: ResultRow) -> float | None:
    return row.mb


def _seconds(row: ResultRow) -> float | None:
    return row.seconds


def front_cell(row: ResultRow, traffic: set[str], compute: set[str]) -> str:
    """``traffic``, ``compute`` or both, flagged while the point has fewer than
    :data:`FRONT_SEEDS` seeds."""
    on = [
        name
        for name, members in (("traffic", traffic), ("compute", compute))
        if row.name in members
    ]
    if not on:
        return ""
    seeds = row.seeds
    flag = "" if seeds >= FRONT_SEEDS else f" ({seeds} seed{'s' if seeds > 1 else ''}: provisional)"
    return ", ".join(on) + flag


def _mb_cell(row: ResultRow) -> str:
    """MB as :func:`fmt_mb` writes it, the seed spread to the same decimals."""
    spec = mb_spec(row.mb) if row.mb is not None else ".3f"
    return with_spread(row, "mb", fmt_mb(row.mb), spec)


def frontier_markdown(rows: Sequence[ResultRow]) -> str:
    """The frontier table: every candidate, least traffic first."""
    traffic, compute = front(rows, _mb), front(rows, _seconds)
    lines = [
        "| run | config | seeds | score | MB per run | less than FedAvg | s per run | front |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in sorted(rows, key=lambda r: (r.mb or 0.0, -(r.score or 0.0))):
        cells = [
            f"`{row.name}`",
            describe_config(row),
            str(row.seeds),
            with_spread(row, "score", fmt(row.score)),
            _mb_cell(row),
            with_spread(row, "reduction", fmt(row.reduction, pct=True), ".1f", scale=100),
            with_spread(row, "seconds", fmt(row.seconds, ".0f"), ".0f"),
            front_cell(row, traffic, compute),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def frontier_section(rows: Sequence[ResultRow], out: Path, plots: str) -> list[str]:
    """The results page's frontier section (table and ``<plots>/frontier.png``), or nothing
    when the folder ran no ``frontier`` group."""
    points = frontier_candidates(rows)
    if not any("frontier" in p.groups.split() for p in points):
        return []
    metric = points[0].metric
    lines = [
        "## Frontier: score against traffic and compute",
        "",
        f"Every federated run of {points[0].task} at the natural partition without DP (the "
        "methods, the layer axis, the strategies and the `frontier` group's variations of "
        f"them), one row per configuration: {metric} (the reported score, mean ± std over its "
        "seeds), megabytes over the whole run (up + down, measured on the wire), the reduction "
        "against FedAvg of the same seed, and wall seconds per run (four clients simulated on "
        "one machine, as many at once as it has cores: the whole federation's compute). **front**: no other configuration scores as "
        "well with as few MB (traffic) or seconds (compute), comparing seed means; a front "
        f"point with fewer than {FRONT_SEEDS} seeds is provisional. Seconds are wall time on "
        "the machine each run had (runs made on other days, or beside other work, differ by "
        "more than their seeds do): a compute difference inside the seconds' spread is none.",
        "",
        frontier_markdown(points),
        "",
    ]
    path = plot_pareto(points, out / plots / FRONTIER_PNG)
    if path is not None:
        lines += [f"![frontier]({path.relative_to(out).as_posix()})", ""]
    return lines


KIND_STYLE: dict[str, dict[str, Any]] = {
    "fedavg": {"color": "tab:blue", "marker": "s", "label": "full model (FedAvg, FedProx)"},
    "layerskip": {"color": "tab:red", "marker": "o", "label": "layer skipping"},
    "lora": {"color": "tab:purple", "marker": "D", "label": "LoRA"},
}


def _kind(row: ResultRow) -> str:
    if row.method in ("fedavg", "fedprox"):
        return "fedavg"
    return "lora" if row.lora_rank else "layerskip"


def score_floor(rows: Sequence[ResultRow], band: float = SCORE_BAND) -> float | None:
    """The lowest score the plot's axis shows: :data:`SCORE_BAND` below the best seed mean
    (None without scores)."""
    scores = [r.score for r in rows if r.score is not None]
    return max(scores) - band if scores else None


def plot_pareto(rows: Sequence[ResultRow], path: Path) -> Path | None:
    """Score against MB (log scale, left) and against seconds per run (right); error bars
    are the seed spread, the fronts are drawn as steps, compressed wire formats hollow. Only
    the points on a panel's front are named there (the table names every point); a point below
    :func:`score_floor` sits on the floor as a ``v`` labelled with its name and score."""
    from matplotlib.figure import Figure

    if not rows:
        return None
    drawn = [r for r in rows if r.score is not None and (r.mb or r.seconds)]
    floor = score_floor(drawn)
    top = max(
        (
            (r.score or 0.0) + (s.std or 0.0 if (s := r.spreads.get("score")) else 0.0)
            for r in drawn
        ),
        default=0.0,
    )
    fig = Figure(figsize=(10.0, 4.6), dpi=110, layout="constrained")
    panels = (
        ("MB over the run (up + down, log scale)", _mb, True),
        ("wall seconds per run (4 clients simulated on one machine)", _seconds, False),
    )
    for i, (xlabel, cost, log) in enumerate(panels):
        ax = fig.add_subplot(1, 2, i + 1)
        for row in rows:
            x, y = cost(row), row.score
            if x is None or y is None:
                continue
            style = dict(KIND_STYLE[_kind(row)])
            style.pop("label")
            spread = row.spreads.get("score")
            hollow = wire_name(row.compression) != "fp32"
            below = floor is not None and y < floor
            if below:
                style["marker"] = "v"
            drawn_bar = ax.errorbar(
                [x],
                [floor if below and floor is not None else y],
                yerr=None if below or spread is None or spread.std is None else [spread.std],
                markerfacecolor="white" if hollow else style["color"],
                linestyle="none",
                markersize=5,
                capsize=2,
                zorder=3,
                **style,
            )
            drawn_bar.lines[0].set_clip_on(False)  # the marker on the floor; bars stay clipped
            if below:
                ax.annotate(
                    f"{_short(row)}: {y:.3f}",
                    (x, floor or 0.0),
                    fontsize=6,
                    xytext=(4, 4),
                    textcoords="offset points",
                )
        best = front(rows, cost)  # its rows all have a cost and a score
        for row in rows:
            if row.name in best and (floor is None or (row.score or 0.0) >= floor):
                ax.annotate(
                    _short(row),
                    (float(cost(row) or 0.0), float(row.score or 0.0)),
                    fontsize=6,
                    xytext=(3, 2),
                    textcoords="offset points",
                )
        on = sorted((r for r in rows if r.name in best), key=lambda r: cost(r) or 0.0)
        if on:
            ax.step(
                [float(cost(r) or 0.0) for r in on],
                [float(r.score or 0.0) for r in on],
                where="post",
                color="gray",
                linewidth=1,
                alpha=0.7,
                label=None if i else "front (seed means)",
            )
        if log:
            ax.set_xscale("log")
        if floor is not None:
            ax.set_ylim(floor, top + 0.05 * (top - floor))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{rows[0].metric} (test, chosen on validation)")
        ax.grid(True, which="both", alpha=0.3)
        if not i:  # low traffic, low score: empty; one entry per kind, in its own marker
            for kind in sorted({_kind(r) for r in rows}):
                style = KIND_STYLE[kind]
                ax.plot([], [], linestyle="none", markersize=5, **style)
            ax.legend(fontsize=7, loc="lower left")
    fig.suptitle(
        f"{rows[0].task}: score against traffic and compute (hollow: fp16 / int8 wire; named: "
        "the front; v: below the axis)"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _short(row: ResultRow) -> str:
    """The run's name without its task: ``lora-int8``, ``layerskip-k4``."""
    prefix = f"{row.task}-"
    return row.name[len(prefix) :] if row.name.startswith(prefix) else row.name
