"""The traffic / accuracy frontier beyond the paper: k x LoRA rank x compression.

Each :class:`FrontierPoint` is one federated configuration on the ablation task: ``k`` top
blocks, trained fully (``lora_rank`` 0) or through LoRA adapters of that rank inside them,
with updates sent as fp32 / fp16 / bf16 / int8 deltas (``compression``). The points become the
``frontier`` group of a suite (:func:`frontier_configs`, registered with
:func:`fedskip.bench.suites.register_group`), and the ``frontier`` suite (:data:`FRONTIER`)
trains them next to the references they are judged against: centralized training (the F1 to
stay within one point of), full-model FedAvg (the traffic to cut by 99 %), paper-style layer
skipping, and the adaptive layer strategies (top / importance / rotating at the same k, hence
the same traffic).

:func:`frontier_rows` and :func:`plot_frontier` turn the finished runs into the frontier table
(config, F1, MB, reduction versus full FedAvg, gap to centralized) and a plot of F1 against MB
on a log scale; :func:`write_frontier` writes both (plus a CSV) into a folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedskip.bench.suites import (
    NATURAL,
    SUITES,
    BenchConfig,
    Suite,
    Sweep,
    register_group,
)
from fedskip.bench.table import ResultRow, fmt, fmt_mb
from fedskip.config import Config, Scalar

TARGET_REDUCTION = 0.99
"""Traffic cut versus full-model FedAvg the frontier aims for."""
TARGET_GAP_POINTS = -1.0
"""Largest F1 loss versus centralized training, in points (x 100), the frontier accepts."""
LORA_LR = 2e-3
"""Learning rate of LoRA points: adapters start at zero and need a larger step than full
fine-tuning (LoRA's usual range is 1e-4..3e-3 against 1e-5..5e-5 for full fine-tuning)."""


FRONTIER_SUITES = {"frontier"}
"""Suites whose expansion includes the ``frontier`` group."""


@dataclass(frozen=True)
class FrontierPoint:
    """One configuration of the frontier (``k`` top blocks, LoRA rank, wire compression)."""

    k: int
    lora_rank: int = 0
    compression: str = "none"
    freeze_a: bool = False
    local_epochs: int = 1
    """Epochs each client trains per round: more local work at the same traffic."""

    @property
    def variant(self) -> str:
        """Run-name suffix, e.g. ``k2-r8-int8``, ``k1-fp16``, ``k2-r8fa-int8``, ``k2-none-le4``."""
        rank = f"-r{self.lora_rank}{'fa' if self.freeze_a else ''}" if self.lora_rank else ""
        epochs = f"-le{self.local_epochs}" if self.local_epochs != 1 else ""
        return f"k{self.k}{rank}-{self.compression}{epochs}"

    def settings(self, num_blocks: int) -> dict[str, Scalar]:
        """Config keys of this point (on top of the suite's settings)."""
        out: dict[str, Scalar] = {
            "method": "layerskip",
            "layers": min(self.k, num_blocks),
            "layer-strategy": "top",
            "lora-rank": self.lora_rank,
            "lora-freeze-a": self.freeze_a,
            "compression": self.compression,
        }
        if self.lora_rank:
            out["lr"] = LORA_LR
        if self.local_epochs != 1:
            out["local-epochs"] = self.local_epochs
        return out

    def labels(self) -> dict[str, Scalar]:
        return {
            "k": self.k,
            "lora_rank": self.lora_rank,
            "compression": self.compression,
            "freeze_a": self.freeze_a,
            "local_epochs": self.local_epochs,
        }


POINTS: tuple[FrontierPoint, ...] = (
    FrontierPoint(1),
    FrontierPoint(2, compression="fp16"),
    FrontierPoint(2, compression="int8"),
    FrontierPoint(1, compression="int8"),
    FrontierPoint(2, lora_rank=8),
    FrontierPoint(2, lora_rank=8, compression="int8"),
    FrontierPoint(2, lora_rank=4, compression="int8"),
    FrontierPoint(2, lora_rank=16, compression="int8"),
    FrontierPoint(2, lora_rank=8, compression="int8", freeze_a=True),
    FrontierPoint(6, lora_rank=8, compression="int8"),
    FrontierPoint(2, local_epochs=4),
    FrontierPoint(2, lora_rank=8, compression="int8", local_epochs=4),
    FrontierPoint(6, lora_rank=16, compression="int8", local_epochs=4),
    FrontierPoint(4, lora_rank=16, compression="int8", local_epochs=4),
)
"""The measured grid: paper-style layer skipping with compressed updates, then LoRA inside the
top blocks at three ranks (one with frozen A), LoRA in every block (k = 6 for MiniLM), and the
paper's k = 2 and LoRA r = 8 + int8 with four local epochs per round (same traffic, 4x the
client compute), and LoRA r = 16 + int8 with four local epochs in every block (the candidate for
the target: ~0.7 MB per message, 99.2 % less than full FedAvg) and in the top four (two blocks
skipped: no backward pass through them)."""


def frontier_configs(suite: Suite, base: Config, num_blocks: int) -> list[BenchConfig]:
    """The ``frontier`` group of ``suite``: :data:`POINTS` on its ablation task. Only the
    ``frontier`` suite gets it (add a suite name to :data:`FRONTIER_SUITES` to extend another:
    the group adds one federated run per point)."""
    if suite.name not in FRONTIER_SUITES:
        return []
    task = suite.sweep.ablation_task
    out = []
    for point in POINTS:
        if point.k > num_blocks:
            continue
        settings: dict[str, Scalar] = {"task": task, **point.settings(num_blocks)}
        labels = {"partition": NATURAL.label, **point.labels()}
        out.append(BenchConfig(f"{task}-layerskip-{point.variant}", settings, ["frontier"], labels))
    return out


FRONTIER = Suite(
    name="frontier",
    description="beyond the paper on NER: k x LoRA rank x fp16/int8 compression next to "
    "centralized, full FedAvg, layer skipping k = 1, 2 and top / importance / rotating at k = 2 "
    "(small corpus, 5 rounds)",
    settings={
        "model": "minilm",
        "data": "synth",
        "synth-sites": 4,
        "clients": 4,
        "partition": "natural",
        "layers": 2,
        "layer-strategy": "top",
        "seed": 42,
        "quiet": True,
        "eval-clients": False,
        "synth-docs": 10,
        "max-length": 64,
        "stride": 16,
        "rounds": 5,
        "epochs": 5,
        "local-epochs": 1,
        "batch-size": 16,
        "lr": 5e-4,
        "head-lr": 0.0,
        "lora-rank": 8,
        "importance-batches": 2,
    },
    sweep=Sweep(
        tasks=("ner",),
        methods=("centralized", "fedavg", "layerskip"),
        layer_counts=(2,),
        strategies=("top", "importance", "rotating"),
        partitions=(),
        noniid_methods=(),
        epsilons=(),
        privacy_methods=(),
    ),
)

SUITES.setdefault(FRONTIER.name, FRONTIER)
register_group("frontier", frontier_configs)


# --------------------------------------------------------------------------- table and plot
def describe_config(row: ResultRow) -> str:
    """Human description of a run: method, blocks, selection, LoRA rank, wire format."""
    if row.method == "centralized":
        return "centralized (pooled data)"
    if row.method == "fedavg":
        return "full-model FedAvg, fp32"
    rank = int(row.extra.get("lora_rank") or 0)
    parts = [f"k={row.layers}"]
    if row.strategy and row.strategy != "top":
        parts.append(f"{row.strategy} selection")
    if rank:
        parts.append(f"LoRA r={rank}" + (" frozen A" if row.extra.get("freeze_a") else ""))
    compression = str(row.extra.get("compression") or "none")
    parts.append("fp32" if compression == "none" else compression)
    epochs = int(row.extra.get("local_epochs") or 1)
    if epochs != 1:
        parts.append(f"{epochs} local epochs")
    return ", ".join(parts)


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
    if row.extra.get("lora_rank"):
        return "lora"
    if row.extra.get("compression") not in (None, "none"):
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
