"""The paper's configuration through Flower's Deployment Engine on this machine: one round of
``fedskip deploy local`` (TLS, SuperNode authentication, random weights) per k, with the bytes
on the wire against ``fedskip comm``'s count and the peak memory of every process tree.

    python benchmarks/deploy_1b.py --model llama-tiny --layers 1            # < 1 min, a check
    python benchmarks/deploy_1b.py --layers 8 --dtype bf16                  # LLaMA 3.2-1B
    python benchmarks/deploy_1b.py --layers 8,10,12,14,16 --dtype fp32 --until-fail

RANDOM WEIGHTS (``model-init=random``): a systems check; the numbers say nothing about accuracy.

Each k runs in its own run directory (``--out``/k<k>-<dtype>); the table has, per k: exit
status and wall time; the message bytes the ServerApp counted (``metrics.jsonl``: tensors in
the train instructions and replies, ``ArrayRecord.count_bytes()``), the TCP bytes a relay
counted between the sites and the SuperLink (``deployment.json``: TLS, HTTP, Flower's object
headers, heartbeats and polling included) and the TLS records' content, each divided by the
analytic count (``fedskip comm``: bytes per client and direction x sites x 2); and the peak
memory of the coordinator's tree (SuperLink + SuperExec + ServerApp) and of each site's
(SuperNode + SuperExec + ClientApps), as ``processes.json`` records them.

Expected memory at LLaMA 3.2-1B (P = 1.236 G parameters, k blocks of 60.8 M, trainable
T(k) = 60.8 M k + 6 k head/norm; fp32 T(8) = 1.95 GB per message), per process, to be checked
against the measured figures:

* weights: 4 P bytes in fp32 (4.94 GB), 2 P in bf16 (2.47 GB), in the ServerApp and in each
  ClientApp (a SuperNode and SuperLink hold no model);
* training (ClientApp): gradients and AdamW's two moments for the trained tensors, in the
  weights' dtype: 3 x T(k) x 4 bytes fp32 (5.84 GB at k = 8), half in bf16; activations of the
  k trained blocks for one batch (small at a few dozen short notes);
* the message, always fp32 on the wire unless ``compression`` says otherwise: 4 T(k) bytes
  (1.95 GB at k = 8). Copies: the sender's ``Array.data`` (np.save bytes) and, while pushing,
  Flower's deflated 5 MiB chunk objects (``push_objects`` deflates them all before sending: a
  second copy); the receiver's pulled object contents, then ``Array.data`` joined from them,
  then the decoded numpy / torch tensors: up to 3 copies, transiently. The SuperNode keeps the
  objects of the message in memory (its in-memory object store) until the ClientApp pulls
  them: about one copy per message in flight each way. The SuperLink (``--superlink-state
  memory``, this script's default) holds a message's objects in memory until they are pulled;
* the ServerApp: the global trained state (4 T(k), fp32) and the replies (2 sites x 4 T(k),
  each possibly twice while decoding) beside its model.

Measured (BENCHMARKS.md §8) a ClientApp peaks higher than this arithmetic (7.3 GiB at k = 2,
9.1 GiB at k = 4 in bf16): it also keeps a private copy of the whole model per call
(``ClientRuntime.fresh``). The arithmetic alone: at k = 8 a ClientApp about 4.94 + 5.84 + 3 x 1.95 ≈ 16.6 GB in fp32, and 2.47 + 2.92 +
3 x 1.95 ≈ 11.2 GB in bf16 (the wire stays fp32); two sites train at once on one machine.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import ROOT, command_line, markdown, write_json

GIB = 1024**3


def deploy_command(args: argparse.Namespace, k: int, out: Path) -> list[str]:
    """``fedskip deploy local`` for one round at k blocks."""
    keys = {
        "model": args.model,
        "model_init": "random",
        "layers": k,
        "dtype": args.dtype,
        "compression": args.compression,
        "synth_docs": args.notes,
        "synth_note_lines": args.note_lines,
        "max_length": args.max_length,
        "stride": args.max_length // 4,
        "batch_size": args.batch_size,
        "eval_clients": "false",
        "activation_cache": args.activation_cache,
        "quiet": "true",
        "seed": args.seed,
    }
    return [
        sys.executable,
        "-m",
        "fedskip.cli",
        "deploy",
        "local",
        "--sites",
        str(args.sites),
        "--rounds",
        "1",
        "--out",
        str(out),
        "--measure-wire",
        "--superlink-state",
        args.superlink_state,
        "--grace",
        "30",
        "--timeout",
        str(args.timeout),
        "--set",
        *(f"{key}={value}" for key, value in keys.items()),
    ]


def analytic_bytes(model: str, k: int, compression: str) -> int:
    """``fedskip comm``'s bytes per client and direction at k blocks, in the wire's format."""
    from fedskip.models.comm import communication_report, wire_bytes
    from fedskip.models.loading import build_meta_model

    meta = build_meta_model(model)
    report = communication_report(meta, layers=k)
    sizes = [p.numel() for p in meta.parameters() if p.requires_grad]
    assert sum(sizes) == report["trainable_params"]
    scheme = {"none": "fp32", "bf16": "bf16", "int8": "int8"}.get(compression)
    if scheme is None:
        raise SystemExit(f"--compression {compression}: use none, bf16 or int8")
    return wire_bytes(sizes, scheme)


def measure(out: Path, sites: int, per_client: int) -> dict[str, Any]:
    """Bytes and memory from a finished run directory."""
    row: dict[str, Any] = {}
    analytic = per_client * sites * 2  # both directions, every site, one round
    rounds = [json.loads(line) for line in _lines(out / "metrics.jsonl")]
    done = [r for r in rounds if isinstance(r.get("round"), int)]
    if done:
        message = sum(r["bytes_down"] + r["bytes_up"] for r in done)
        row["message_bytes"] = message
        row["message/analytic"] = round(message / analytic, 6)
        row["replies_ok"] = sum(int(r.get("replies_ok", 0)) for r in done)
        row["replies_rejected"] = sum(int(r.get("replies_rejected", 0)) for r in done)
        row["rejections"] = "; ".join(x for r in done for x in r.get("rejections", []))
    deployment = _json(out / "deployment.json")
    wire = deployment.get("wire", {})
    if wire:
        tcp = sum(w[d]["tcp_bytes"] for w in wire.values() for d in ("up", "down"))
        app = sum(w[d]["app_bytes"] for w in wire.values() for d in ("up", "down"))
        row["tcp/analytic"] = round(tcp / analytic, 6)
        row["tls-content/analytic"] = round(app / analytic, 6)
        row["tcp_bytes"] = tcp
    row["analytic_bytes"] = analytic
    for name, tree in _json(out / "processes.json").get("trees", {}).items():
        label = "coordinator" if name == "superlink" else name
        top = max(tree["processes"], key=lambda p: p["peak_rss_bytes"], default=None)
        row[f"{label} PSS GiB"] = round(tree["peak_pss_bytes"] / GIB, 2)
        if top is not None:
            row[f"{label} largest"] = f"{top['name']} {top['peak_rss_bytes'] / GIB:.2f}"
    return row


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def run_one(args: argparse.Namespace, k: int) -> dict[str, Any]:
    out = Path(args.out).resolve() / f"k{k}-{args.dtype}"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with (out.parent / f"k{k}-{args.dtype}.log").open("w") as log:
        proc = subprocess.Popen(
            deploy_command(args, k, out), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )
        try:
            proc.wait()
        except BaseException:  # Ctrl-C / SIGTERM: the deployment stops its processes on SIGINT
            proc.send_signal(signal.SIGINT)
            proc.wait()
            raise
    row: dict[str, Any] = {
        "k": k,
        "dtype": args.dtype,
        "wire": args.compression,
        "rc": proc.returncode,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    row.update(measure(out, args.sites, analytic_bytes(args.model, k, args.compression)))
    return row


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="llama-3.2-1b")
    parser.add_argument("--layers", default="8", help="k, or comma-separated k values")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument(
        "--compression",
        default="none",
        help="wire format (config key compression): none = fp32 values (default), bf16, int8",
    )
    parser.add_argument(
        "--superlink-state",
        default="memory",
        choices=("memory", "disk"),
        help="deploy local --superlink-state: memory (default: Flower 1.42's SQLite store fails "
        "a round whose replies are a GB or more with 'database is locked') or disk",
    )
    parser.add_argument("--sites", type=int, default=2)
    parser.add_argument("--notes", type=int, default=24, help="synthetic notes per site")
    parser.add_argument("--note-lines", type=int, default=3, help="lines kept per note")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--activation-cache", default="auto", choices=("auto", "off"))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=7200.0, help="seconds per run")
    parser.add_argument("--until-fail", action="store_true", help="stop at the first failing k")
    parser.add_argument("--out", default="/tmp/fedskip-deploy-1b", help="parent run directory")
    parser.add_argument("--json", help="write the rows here")
    return parser.parse_args(argv)


def passed_round(row: dict[str, Any], sites: int) -> bool:
    """A k passes when the deployment exited 0 and its round aggregated every site's reply (a
    round can complete with a site's ClientApp killed, e.g. by the kernel's OOM killer)."""
    return row["rc"] == 0 and row.get("replies_ok") == sites and not row.get("replies_rejected")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print("RANDOM WEIGHTS (model-init=random): a systems check, not an accuracy result", flush=True)
    rows = []
    for k in (int(v) for v in args.layers.split(",")):
        row = run_one(args, k)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if not passed_round(row, args.sites) and args.until_fail:
            break
    passed = [r["k"] for r in rows if passed_round(r, args.sites)]
    columns = list(dict.fromkeys(c for r in rows for c in r))
    print(f"`{command_line()}`\n\n{markdown(rows, columns)}")
    print(
        f"\nlargest k that passed ({args.dtype}, wire {args.compression}): {max(passed, default=0)}"
    )
    write_json(args.json, {"command": command_line(), "rows": rows})
    return 0 if all(passed_round(r, args.sites) for r in rows) or args.until_fail else 1


if __name__ == "__main__":
    sys.exit(main())
