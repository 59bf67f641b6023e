"""PNG plots of runs and suites (matplotlib's Agg renderer; no display, no pyplot state).

Each function draws one figure and returns the written path, or None when there is nothing to
draw (e.g. no run of that axis finished). Metrics are plotted 0..1 as recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fedskip.bench.records import MB, RunRecord
from fedskip.bench.table import ResultRow

DPI = 110
METHOD_STYLE = {
    "centralized": ("black", "--"),
    "local": ("tab:gray", ":"),
    "fedavg": ("tab:blue", "-"),
    "fedprox": ("tab:orange", "-"),
    "lora": ("tab:purple", "-"),
    "layerskip": ("tab:red", "-"),
}


def _figure(width: float = 6.4, height: float = 4.0, *, legend_entries: int = 0) -> Any:
    """A figure ``width`` x ``height`` inches plus room for a legend of ``legend_entries`` below
    the axes (:func:`_legend_below`), so constrained layout never squeezes the axes to nothing
    (its "axes sizes collapsed to zero" warning) however many runs a report compares."""
    from matplotlib.figure import Figure

    rows = -(-legend_entries // _legend_columns(legend_entries))
    height += rows * LEGEND_ROW_INCHES
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


LEGEND_ROW_INCHES = 0.18
"""Height of one legend row at font size 7, spacing included (inches)."""


def _legend_columns(entries: int) -> int:
    return 1 if entries <= 4 else 2


def _legend_below(ax: Any, entries: int) -> None:
    """The legend under the axes (outside them), never over the curves."""
    ax.legend(
        fontsize=7,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.14),
        ncols=_legend_columns(entries),
        frameon=False,
    )


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _style(method: str) -> dict[str, Any]:
    color, line = METHOD_STYLE.get(method, (None, "-"))
    return {"color": color, "linestyle": line}


def plot_curves(
    records: Sequence[RunRecord], path: Path, *, x: str = "round", title: str = ""
) -> Path | None:
    """Metric against round/epoch (``x="round"``) or cumulative MB exchanged (``x="mb"``).

    With ``x="mb"``, runs that exchange nothing (centralized, local-only) are drawn as
    horizontal reference lines at their final metric.
    """
    fig = curves_figure(records, x=x, title=title)
    return None if fig is None else _save(fig, path)


def curves_figure(records: Sequence[RunRecord], *, x: str = "round", title: str = "") -> Any:
    """The figure :func:`plot_curves` saves (None when no run has a curve)."""
    curves = [r for r in records if r.curve]
    if not curves:
        return None
    fig = _figure(legend_entries=len(curves))
    ax = fig.add_subplot()
    for record in curves:
        label = record.name
        style = _style(record.method)
        if x == "mb" and record.total_bytes == 0:
            if record.final is not None:
                ax.axhline(record.final, label=f"{label} (no traffic)", linewidth=1, **style)
            continue
        xs = [p.step if x == "round" else p.cumulative_bytes / MB for p in record.curve]
        ys = [p.metric for p in record.curve]
        ax.plot(xs, ys, marker="o", markersize=3, label=label, **style)
    if x == "round":
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if x == "mb":
        ax.set_xscale("log")  # FedAvg moves orders of magnitude more than layer skipping
    ax.set_xlabel("round / epoch" if x == "round" else "cumulative MB exchanged (up + down)")
    ax.set_ylabel(curves[0].metric_name)
    ax.set_title(title or f"{curves[0].metric_name} vs {'round' if x == 'round' else 'MB'}")
    ax.grid(alpha=0.3)
    _legend_below(ax, len(curves))
    return fig


def plot_layers(rows: Sequence[ResultRow], path: Path, *, title: str = "") -> Path | None:
    """Trained blocks k against final metric (left axis) and MB exchanged (right axis)."""
    points = sorted(
        (r.layers, r.final, r.mb) for r in rows if r.layers is not None and r.final is not None
    )
    if not points:
        return None
    ks = [p[0] for p in points]
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(ks, [p[1] for p in points], marker="o", color="tab:red", label=rows[0].metric)
    ax.set_xlabel("blocks trained and exchanged (k)")
    ax.set_ylabel(f"final {rows[0].metric}", color="tab:red")
    ax.set_xticks(ks)
    twin = ax.twinx()
    twin.plot(ks, [p[2] for p in points], marker="s", color="tab:blue", linestyle="--")
    twin.set_ylabel("MB exchanged (up + down)", color="tab:blue")
    ax.set_title(title or "layer count: accuracy vs communication")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_axis(
    rows: Sequence[ResultRow],
    path: Path,
    *,
    key: str,
    order: Sequence[Any],
    xlabel: str,
    title: str,
) -> Path | None:
    """Final metric per value of a categorical axis (partition label, target ε, strategy),
    one line per method, x positions in ``order``."""
    by_method: dict[str, dict[Any, float]] = {}
    for row in rows:
        value = row.extra.get(key)
        if value in order and row.final is not None:
            by_method.setdefault(row.series, {})[value] = row.final  # k = 4, LoRA-FA, ...
    if not by_method:
        return None
    fig = _figure(legend_entries=len(by_method))
    ax = fig.add_subplot()
    positions = {value: i for i, value in enumerate(order)}
    for method, values in sorted(by_method.items()):
        xs = sorted(values, key=positions.__getitem__)
        ax.plot(
            [positions[v] for v in xs],
            [values[v] for v in xs],
            marker="o",
            label=method,
            **_style(method),
        )
    ax.set_xticks(range(len(order)), [_axis_label(v) for v in order])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"final {rows[0].metric}")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    _legend_below(ax, len(by_method))
    return _save(fig, path)


def _axis_label(value: Any) -> str:
    if value == 0:
        return "no DP"
    if isinstance(value, str) and value.startswith("dir"):
        return f"α={value[3:]}"
    return str(value)
