"""The frontier's table and plot: the ``frontier`` group (k x LoRA rank x compression points,
:func:`fedskip.bench.groups.frontier_configs`) of the ``frontier`` suite
(:data:`fedskip.bench.suites.FRONTIER`) judged against the references it trains beside them:
centralized training (the F1 to stay within one point of), full-model FedAvg (the traffic to cut
by 99 %), paper-style layer skipping, and the adaptive layer strategies (top / importance /
rotating at the same k, hence the same traffic).

:func:`frontier_rows` and :func:`plot_frontier` turn the finished runs into the frontier table
(config, F1, MB, reduction versus full FedAvg, gap to centralized) and a plot of F1 against MB
on a log scale; :func:`write_frontier` writes both (plus a CSV) into a folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fedskip.bench.pareto import describe_config
from fedskip.bench.table import ResultRow, fmt, fmt_mb

TARGET_REDUCTION = 0.99
"""Traffic cut versus full-model FedAvg the frontier aims for."""
TARGET_GAP_POINTS = -1.0
"""Largest F1 loss versus centralized training, in points (x 100), the frontier accepts."""


# --------------------------------------------------------------------------- table and plot
def meets_target(row: ResultRow) -> bool:
    """≥ 99 % less traffic than full FedAvg at ≤ 1 F1 point below centralized."""
    return (
        row.reduction is not None
        and row.gap_points is not None
        and row.reduction >= TARGET_REDUCTION
        and row.gap_points >= TARGET_GAP_POINTS
    )


def frontier_rows(rows: Sequence[ResultRow]) -> list[ResultRow]:
    """The rows of the frontier table: every federated NER run, least traffic first."""
    chosen = [r for r in rows if r.method not in ("local",) and r.final is not None]
    return sorted(chosen, key=lambda r: (r.mb or 0.0, -(r.final or 0.0)))


def frontier_markdown(rows: Sequence[ResultRow]) -> str:
    """The frontier table (Markdown): config, F1, MB, reduction vs FedAvg, gap to centralized."""
    head = [
        "| run | config | final F1 | MB (up+down) | reduction vs FedAvg | gap to centralized (pts) | target |",
        "|---|---|---:|---:|---:|---:|:---:|",
    ]
    lines = [
        f"| `{r.name}` | {describe_config(r)} | {fmt(r.final)} | {fmt_mb(r.mb)} | "
        f"{fmt(r.reduction, pct=True) if r.reduction is not None else '–'} | "
        f"{fmt(r.gap_points, '.1f', signed=True)} | {'yes' if meets_target(r) else ''} |"
        for r in rows
    ]
    return "\n".join(head + lines)


def plot_frontier(rows: Sequence[ResultRow], path: Path, *, title: str = "") -> Path | None:
    """F1 against MB exchanged (log scale): full FedAvg, paper-style layer skipping, the
    frontier points and the adaptive strategies; centralized as a horizontal line."""
    from matplotlib.figure import Figure

    moved = [r for r in rows if r.mb and r.final is not None]
    if not moved:
        return None
    fig = Figure(figsize=(7.2, 4.6), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    styles: dict[str, dict[str, Any]] = {
        "fedavg": {"color": "tab:blue", "marker": "s", "label": "full-model FedAvg"},
        "paper": {"color": "tab:red", "marker": "o", "label": "layer skipping (paper)"},
        "compressed": {"color": "tab:orange", "marker": "^", "label": "layer skipping + fp16/int8"},
        "lora": {"color": "tab:purple", "marker": "D", "label": "LoRA in selected blocks"},
        "strategy": {"color": "tab:green", "marker": "v", "label": "importance / rotating"},
    }
    seen: set[str] = set()
    for row in moved:
        kind = _kind(row)
        style = dict(styles[kind])
        if kind in seen:
            style.pop("label")
        seen.add(kind)
        x, y = float(row.mb or 0.0), float(row.final or 0.0)
        ax.scatter([x], [y], s=36, zorder=3, **style)
        ax.annotate(_short(row), (x, y), fontsize=7, xytext=(4, 3), textcoords="offset points")
    central = [r for r in rows if r.method == "centralized" and r.final is not None]
    if central:
        f1 = central[0].final or 0.0
        ax.axhline(f1, color="black", linestyle="--", linewidth=1, label="centralized")
        ax.axhline(f1 - 0.01, color="gray", linestyle=":", linewidth=1, label="centralized - 1 pt")
    fedavg = [r for r in moved if r.method == "fedavg"]
    if fedavg:
        ax.axvline(
            (fedavg[0].mb or 0) * (1 - TARGET_REDUCTION),
            color="gray",
            linestyle="-.",
            linewidth=1,
            label="99 % less than FedAvg",
        )
    ax.set_xscale("log")
    ax.set_xlabel("MB exchanged over the run (up + down, log scale)")
    ax.set_ylabel("final F1 (global test set)")
    ax.set_title(title or "traffic vs F1")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _kind(row: ResultRow) -> str:
    if row.method == "fedavg":
        return "fedavg"
    if row.lora_rank:
        return "lora"
    if row.compression not in ("", "none"):
        return "compressed"
    if row.strategy and row.strategy != "top":
        return "strategy"
    return "paper"


def _short(row: ResultRow) -> str:
    return row.name.split("-", 2)[-1] if row.name.count("-") >= 2 else row.method


def write_frontier(bench_out: str | Path, folder: str | Path, *, stem: str = "frontier") -> Path:
    """Frontier table (``<stem>.md``, ``<stem>.csv``) and plot (``<stem>.png``) of the finished
    runs of the suite in ``bench_out``, written into ``folder``. Returns the Markdown path."""
    from fedskip.bench.report import load_suite
    from fedskip.bench.table import build_rows, write_csv

    manifest, records = load_suite(bench_out)
    by_name = {c["name"]: c for c in manifest["configs"]}
    groups = {n: c["groups"] for n, c in by_name.items()}
    labels = {n: c["labels"] for n, c in by_name.items()}
    rows = frontier_rows(build_rows(records, groups, labels))
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / f"{stem}.csv")
    plot_frontier(rows, out / f"{stem}.png", title=f"{manifest['suite']} suite: F1 vs traffic")
    text = [
        f"# Frontier: suite `{manifest['suite']}`",
        "",
        f"Target: ≥ {TARGET_REDUCTION:.0%} less traffic than full-model FedAvg at ≤ "
        f"{-TARGET_GAP_POINTS:g} F1 point below centralized. MB = 10^6 bytes, measured on the "
        "wire (training messages, up + down, all clients and rounds).",
        "",
        frontier_markdown(rows),
        "",
        f"![F1 vs MB]({stem}.png)",
        "",
    ]
    path = out / f"{stem}.md"
    path.write_text("\n".join(text), "utf-8")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fedskip.bench.frontier BENCH_OUT [FOLDER]``: write the frontier of a suite
    folder (default FOLDER: BENCH_OUT)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m fedskip.bench.frontier", description=main.__doc__
    )
    parser.add_argument("bench_out", help="folder of `fedskip bench --suite frontier --out ...`")
    parser.add_argument("folder", nargs="?", help="where to write frontier.md/.csv/.png")
    args = parser.parse_args(argv)
    from fedskip.errors import FedskipError

    try:
        path = write_frontier(args.bench_out, args.folder or args.bench_out)
    except FedskipError as exc:
        import sys

        print(f"fedskip: error: {exc}", file=sys.stderr)
        return 2
    print(f"frontier: {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
