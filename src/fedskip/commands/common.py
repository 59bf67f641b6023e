"""Arguments shared by the training commands (``--config F`` and ``--set k=v ...``), what every
training command leaves at its end (the run's report) and the closing lines that name what to
run next."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from fedskip.config import DEVICES, Config, load_config


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML file with config keys (`fedskip config > FILE` writes every default)",
    )
    add_set_arg(
        parser,
        "override config keys (repeatable): --set layers=4 lr=1e-4 --set rounds=3; "
        "`fedskip config` lists every key with its default and allowed values",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def add_inference_args(parser: argparse.ArgumentParser, *, batch_size: int, per_pass: str) -> None:
    """The options of a command that runs an exported model: ``--batch-size`` (``per_pass``:
    what one forward pass holds), ``--device`` and ``--json``."""
    parser.add_argument(
        "--batch-size",
        type=int,
        default=batch_size,
        metavar="N",
        help=f"{per_pass} per forward pass",
    )
    parser.add_argument(
        "--device", default="auto", choices=DEVICES, help="auto picks CUDA when present"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def add_set_arg(parser: argparse.ArgumentParser, help: str) -> None:
    """``--set KEY=VALUE ...`` (repeatable), collected as ``args.overrides`` (a list of lists)."""
    parser.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        nargs="+",
        action="append",
        default=[],
        help=help,
    )


def config_from_args(args: argparse.Namespace, **command_defaults: Any) -> Config:
    """Resolve defaults < command defaults < --config < --set (< --quiet)."""
    pairs = [p for group in args.overrides for p in group]
    cfg = load_config(args.config, pairs, **command_defaults)
    if getattr(args, "quiet", False):
        cfg = cfg.replace(quiet=True)
    return cfg


def leave_report(out: str | Path) -> Path | None:
    """At the end of a training command (``run``, ``centralized``, ``deploy local``, each
    config of ``bench``): ``OUT/report.md``, ``OUT/report.csv`` and ``OUT/plots/`` of the run
    directory ``out``, as ``fedskip report OUT`` renders them; then the run's final figures and
    files to its trackers (:func:`fedskip.tracking.log_outputs`: TensorBoard HParams, MLflow
    metrics and artifacts). Returns the report's path, or None when ``out`` holds no run (no
    ``config.json``: it failed before starting)."""
    from fedskip.bench.report import render_report
    from fedskip.tracking import log_outputs

    folder = Path(out)
    if not (folder / "config.json").is_file():
        return None
    path = render_report([folder], folder)
    log_outputs(folder)
    return path


def next_commands(cfg: Config, out: str | Path) -> str:
    """The closing lines of a training command: where the run's report is (or the command that
    renders it), the exported model's predictions (when ``out/model`` was written), and the
    TensorBoard / MLflow viewers of config key ``tracking``."""
    from fedskip.tracking import TENSORBOARD_DIR, full_mlflow, mlflow_uri

    folder = Path(out)
    here = shlex.quote(str(folder))
    if (folder / "report.md").is_file():
        lines = [
            f"report: {shlex.quote(str(folder / 'report.md'))} (plots in {here}/plots; "
            f"compare with other runs: fedskip report {here} OTHER_RUN...)"
        ]
    else:
        lines = [f"fedskip report {here}"]
    if (folder / "model" / "config.json").is_file():
        model = shlex.quote(str(folder / "model"))
        lines.append(f"fedskip predict --model {model} --text 'the note text'")
    tracking = cfg.tracking_list()
    if "tensorboard" in tracking:
        lines.append(f"tensorboard --logdir {shlex.quote(str(folder / TENSORBOARD_DIR))}")
    if "mlflow" in tracking:
        uri = mlflow_uri(cfg, folder)
        if uri.startswith(("http://", "https://")):
            lines.append(f"open {uri} (the MLflow server of config key mlflow-uri)")
        else:
            ui = f"mlflow ui --backend-store-uri {shlex.quote(uri)}"
            lines.append(ui if full_mlflow() else f'{ui} (after pip install "fedskip[mlflow]")')
    return "next:\n" + "\n".join(f"  {line}" for line in lines)
