"""Local training step time and peak memory: full fine-tuning vs layer skipping for each k.

Every variant (full, k = 1 .. blocks) is measured in its own fresh process, in one invocation,
with the same batch of random token ids and the training engine every method uses
(:func:`fedskip.train.engine.train`, AdamW). One warm-up call (optimizer state, allocator) is
followed by a timed call of ``--steps`` optimizer steps; a process's step time is their mean.
Variants run round robin ``--repeat`` times (on a shared machine a busy spell then hits every
variant) and the median process is reported.

Memory (see ``benchmarks/common.py``): CPU — the worker's ``ru_maxrss`` high-water mark, and the
part of it added by training (peak minus the RSS after loading the model); CUDA —
``torch.cuda.max_memory_allocated()`` during training.

    python benchmarks/step_time.py --model minilm --batch-size 16 --seq-len 128 --steps 5
    python benchmarks/step_time.py --model llama-tiny --batch-size 16 --seq-len 128 --steps 5
    python benchmarks/step_time.py --model llama-3.2-1b --random-weights --device cuda \\
        --dtype bf16 --batch-size 8 --seq-len 512 --steps 10
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from common import (
    MIB,
    command_line,
    current_rss_bytes,
    markdown,
    peak_rss_bytes,
    run_worker,
    write_json,
)

NUM_LABELS = 9  # O + B/I for 4 entity types, like the synthetic i2b2-style corpus


def build(model_name: str, *, random_weights: bool, dtype: str, device: str) -> Any:
    """The token classifier: pretrained (fedskip's loader) or random init from the preset's
    architecture (no download; what the GPU measurement of LLaMA 3.2-1B uses)."""
    import torch

    labels = ["O"] + [f"{p}-T{i}" for i in range(4) for p in ("B", "I")]
    if not random_weights:
        from fedskip.models.loading import load_model

        model, _ = load_model(
            model_name,
            task="ner",
            labels=labels,
            multi_label=False,
            dtype=dtype,
            device=device,
            seed=0,
        )
        return model
    from transformers import AutoModelForTokenClassification

    from fedskip.models.loading import resolve_dtype
    from fedskip.models.presets import get_preset

    preset = get_preset(model_name)
    if preset is None:
        raise SystemExit(f"--random-weights needs a preset, not {model_name!r}")
    config = preset.build_config()
    config.num_labels = NUM_LABELS
    torch.manual_seed(0)
    with torch.device(device):  # initialised where it runs: 1.2 B values in seconds on a GPU
        model = AutoModelForTokenClassification.from_config(config, dtype=resolve_dtype(dtype))
    return model.train()


def random_examples(vocab: int, seq_len: int, count: int) -> list[dict[str, list[int]]]:
    """``count`` token-classification examples of ``seq_len`` random ids and labels (seed 0)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    out = []
    for _ in range(count):
        ids = torch.randint(0, vocab, (seq_len,), generator=gen).tolist()
        labels = torch.randint(0, NUM_LABELS, (seq_len,), generator=gen).tolist()
        out.append({"input_ids": ids, "attention_mask": [1] * seq_len, "labels": labels})
    return out


def collate(rows: list[dict[str, list[int]]]) -> dict[str, Any]:
    """Equal-length examples as a batch of tensors."""
    import torch

    return {k: torch.tensor([r[k] for r in rows]) for k in rows[0]}


def worker(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from fedskip.models.freeze import apply_full_finetune, apply_layer_skip, count_parameters
    from fedskip.models.layers import discover_layers
    from fedskip.selection import get_selector
    from fedskip.train.engine import TrainSettings, train

    torch.set_num_threads(args.threads)
    model = build(
        args.model, random_weights=args.random_weights, dtype=args.dtype, device=args.device
    )
    stack = discover_layers(model)
    if args.variant == "full":
        apply_full_finetune(model, stack)
    else:
        chosen = get_selector("top").select(stack.num_blocks, int(args.variant))
        apply_layer_skip(model, stack, chosen)
    total, trainable = count_parameters(model)
    loaded_rss = current_rss_bytes()
    batch = random_examples(int(model.config.vocab_size), args.seq_len, args.batch_size)

    settings = TrainSettings(lr=1e-5, warmup_ratio=0.0, batch_size=args.batch_size, quiet=True)
    cuda = args.device.startswith("cuda")
    train(model, batch, collate, settings, epochs=1, device=args.device)  # warm-up
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    result = train(model, batch * args.steps, collate, settings, epochs=1, device=args.device)
    if cuda:
        torch.cuda.synchronize()
    return {
        "variant": args.variant,
        "blocks": stack.num_blocks,
        "total_params": total,
        "trainable_params": trainable,
        "step_s": result.seconds / max(result.steps, 1),
        "steps": result.steps,
        "peak_rss": peak_rss_bytes(),
        "loaded_rss": loaded_rss,
        "cuda_peak": torch.cuda.max_memory_allocated() if cuda else None,
    }


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median step time (its memory figures come with it); all step times kept."""
    ordered = sorted(runs, key=lambda r: r["step_s"])
    chosen = dict(ordered[len(ordered) // 2])
    chosen["all_step_s"] = [r["step_s"] for r in runs]
    return chosen


def rows_of(results: list[dict[str, Any]], cuda: bool) -> list[dict[str, Any]]:
    full = results[0]
    rows = []
    for r in results:
        mem = r["cuda_peak"] if cuda else r["peak_rss"] - r["loaded_rss"]
        full_mem = full["cuda_peak"] if cuda else full["peak_rss"] - full["loaded_rss"]
        rows.append(
            {
                "variant": "full fine-tuning"
                if r["variant"] == "full"
                else f"layer skip k={r['variant']}",
                "trainable params": f"{r['trainable_params']:,}",
                "step (s)": f"{r['step_s']:.3f}",
                "range (s)": f"{min(r['all_step_s']):.3f}–{max(r['all_step_s']):.3f}",
                "speed-up vs full": f"{full['step_s'] / r['step_s']:.2f}x",
                "peak RSS (MiB)": f"{r['peak_rss'] / MIB:.0f}",
                "training memory (MiB)": f"{mem / MIB:.0f}",
                "memory vs full": f"{mem / full_mem:.2f}",
            }
        )
    return rows


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every variant, round robin over fresh worker processes; the median run of each."""
    passthrough = [a for a in sys.argv[1:] if not a.startswith("--json")]
    if args.json:
        passthrough = [a for a in passthrough if a != args.json]
    script = Path(__file__)
    first = run_worker(script, [*passthrough, "--variant", "full"])
    ks = [int(k) for k in args.layers.split(",") if k] or list(range(1, first["blocks"] + 1))
    variants = ["full", *map(str, ks)]
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    runs["full"].append(first)
    for repeat in range(args.repeat):  # round robin, so a busy spell hits every variant
        for variant in variants:
            if repeat == 0 and variant == "full":
                continue
            runs[variant].append(run_worker(script, [*passthrough, "--variant", variant]))
    return [median_run(runs[v]) for v in variants]


COLUMNS = [
    "variant",
    "trainable params",
    "step (s)",
    "range (s)",
    "speed-up vs full",
    "peak RSS (MiB)",
    "training memory (MiB)",
    "memory vs full",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--random-weights", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per variant")
    parser.add_argument("--layers", default="", help="comma-separated k values (default 1..all)")
    parser.add_argument("--json", default=None, help="also write the raw results here")
    parser.add_argument("--from-json", default=None, help="print the table of a saved --json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="full", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        command, results = saved["command"], saved["results"]
    else:
        command, results = command_line(), measure(args)
        write_json(args.json, {"command": command, "results": results})
    print(f"`{command}`\n")
    print(markdown(rows_of(results, args.device.startswith("cuda")), COLUMNS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
