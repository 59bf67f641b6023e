"""The groups a suite adds beyond its sweep's axes: each a
:data:`~fedskip.bench.spec.GroupBuilder` that the catalogue (:mod:`fedskip.bench.suites`) lists
in a suite's ``extra_groups``.

``frontier`` (:func:`frontier_configs`): the traffic / accuracy frontier beyond the paper. Each
:class:`FrontierPoint` is one federated configuration on the ablation task: ``k`` top blocks,
trained fully (``lora_rank`` 0) or through LoRA adapters of that rank inside them, with updates
sent as fp32 / fp16 / bf16 / int8 deltas (``compression``). Its table and plot:
:mod:`fedskip.bench.frontier`.

``frontier`` in ``paper`` (:func:`paper_frontier_configs`): the same question inside the paper
suite's discipline (its corpus, plateau stopping, choice on validation, seeds). Each
:class:`FrontierVariant` is one of the suite's own federated runs (LoRA in every block, FedAvg,
layer skipping of k blocks) with one thing changed: the wire format, LoRA's rank or frozen A,
LoRA inside the selected blocks, or local epochs. The runs it varies are frontier points too;
the front is drawn in :mod:`fedskip.bench.pareto`.

``personalization`` (:func:`personalization_configs`): is a site better served by its own head
than by the global model, or by training alone? Layer skipping with ``personalize=none`` and
with ``personalize=head`` (both with the sites scoring on their own test splits,
``eval-clients=true``), and local-only training on the same partition. Its per-site tables and
plot: :mod:`fedskip.bench.personalization`.

``fed-optim`` (:func:`federated_optimisation_configs`): the federated optimisation of few blocks
on the other task (ICD-9 coding). Layer skipping there learned slowly at one local epoch per
round under plain averaging (docs/results/README.md, "ICD-9 coding"); each of
:data:`FED_OPTIM_CANDIDATES` trains the task's layer-skipping configuration once more, and the
reports keep, per seed, the one with the best validation score (:mod:`fedskip.bench.choice`).
"""

from __future__ import annotations

from dataclasses import dataclass

from fedskip.bench.spec import NATURAL, BenchConfig, Candidate, Suite, dirichlet
from fedskip.config import Config, Scalar

# --------------------------------------------------------------------------- frontier
LORA_LR = 2e-3
"""Learning rate of LoRA points: adapters start at zero and need a larger step than full
fine-tuning (LoRA's usual range is 1e-4..3e-3 against 1e-5..5e-5 for full fine-tuning)."""


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
    """The ``frontier`` group of ``suite``: :data:`POINTS` on its ablation task, one federated
    run per point (the catalogue gives it to the ``frontier`` suite)."""
    task = suite.sweep.ablation_task
    out = []
    for point in POINTS:
        if point.k > num_blocks:
            continue
        settings: dict[str, Scalar] = {"task": task, **point.settings(num_blocks)}
        labels = {"partition": NATURAL.label, **point.labels()}
        out.append(BenchConfig(f"{task}-layerskip-{point.variant}", settings, ["frontier"], labels))
    return out


@dataclass(frozen=True)
class FrontierVariant:
    """A frontier point of the ``paper`` suite: its run ``<task>-<of>`` with ``settings``
    changed, named ``<task>-<of>-<suffix>``. ``of`` is ``lora`` (rank 8 in every block),
    ``fedavg``, ``layerskip`` (the suite's own layer-skipping run: its k, its strategy) or
    ``layerskip-k<k>`` (the top k blocks)."""

    of: str
    suffix: str
    settings: dict[str, Scalar]

    def base_settings(self, base: Config, num_blocks: int) -> dict[str, Scalar]:
        """The settings of the run this varies, as the suite's methods / layers groups set
        them (the suite's method and partial settings come on top in the expansion)."""
        if self.of == "lora":
            return {"method": "lora", "lora-rank": base.lora_rank or 8}
        if self.of == "fedavg":
            return {"method": "fedavg", "lora-rank": 0}
        if self.of == "layerskip":
            return {"method": "layerskip", "lora-rank": 0}
        if self.of.startswith("layerskip-k"):
            return {"method": "layerskip", "layers": int(self.of[11:]), "lora-rank": 0}
        raise ValueError(
            f"frontier variant of {self.of!r}: not lora, fedavg, layerskip or layerskip-k<k>"
        )


PAPER_FRONTIER: tuple[FrontierVariant, ...] = (
    FrontierVariant("lora", "int8", {"compression": "int8"}),
    FrontierVariant("lora", "fp16", {"compression": "fp16"}),
    FrontierVariant("lora", "fa-int8", {"lora-freeze-a": True, "compression": "int8"}),
    FrontierVariant("lora", "r16-int8", {"lora-rank": 16, "compression": "int8"}),
    FrontierVariant("lora", "int8-le4", {"compression": "int8", "local-epochs": 4}),
    FrontierVariant(
        "layerskip-k4", "r8-int8", {"lora-rank": 8, "lr": LORA_LR, "compression": "int8"}
    ),
    FrontierVariant("layerskip-k4", "int8", {"compression": "int8"}),
    FrontierVariant("layerskip-k5", "int8", {"compression": "int8"}),
    FrontierVariant("fedavg", "int8", {"compression": "int8"}),
    FrontierVariant("layerskip", "int8", {"compression": "int8"}),
)
"""The ``paper`` suite's frontier grid, declared before any of its runs (2026-12-07), in run
order, but for its last point: layer skipping k = 2 (``fedskip run``'s default) with int8
deltas was added the same evening, after int8 had cost nothing measurable on LoRA, FedAvg and
k = 5 (three seeds each), to decide whether ``compression=auto`` should mean int8. The suite's runs it varies already stand at the known corners (on NER, three seeds each:
LoRA rank 8 in every block 0.958 at 137 MB a run, layer skipping k = 4 and 5 at 0.958 and 0.968
with 2.3–3.4 GB, FedAvg 0.972 at 7.2 GB); the grid asks what each corner gives up to fp16 /
int8 deltas (the wire moves 2x / 4x fewer bytes), what LoRA's rank and frozen A (half the
adapter's coordinates on the wire) cost, whether LoRA inside the top four blocks (no backward
pass through the two below) keeps LoRA's score at less compute, and whether four local epochs a
round reach the plateau in fewer rounds (less traffic, 4x the compute per round). Every point
exchanges what its run exchanges (the task head included), at the learning rates of the run it
varies: LoRA inside the top four blocks takes LoRA's lr (2e-3) for its adapters and keeps
layer skipping's head lr (1e-2), so against ``lora`` (head lr 2e-3) it differs in the head's
rate too."""


def paper_frontier_configs(suite: Suite, base: Config, num_blocks: int) -> list[BenchConfig]:
    """The ``frontier`` group of ``suite`` (the catalogue gives it to ``paper``): each of
    :data:`PAPER_FRONTIER` on its ablation task at the natural partition, labelled with the run
    it varies (``frontier_of``)."""
    task = suite.sweep.ablation_task
    out = []
    for point in PAPER_FRONTIER:
        own = point.base_settings(base, num_blocks)
        if int(own.get("layers", 0)) >= num_blocks:
            continue  # k = all blocks is the FedAvg run, not a layer-skipping one
        settings: dict[str, Scalar] = {"task": task, **own, **point.settings}
        labels: dict[str, Scalar] = {
            "partition": NATURAL.label,
            "frontier_of": f"{task}-{point.of}",
        }
        out.append(BenchConfig(f"{task}-{point.of}-{point.suffix}", settings, ["frontier"], labels))
    return out


# --------------------------------------------------------------------------- personalization
PERSONALIZATION_GROUP = "personalization"
PARTITIONS = (NATURAL, dirichlet(0.1))
MODES = ("none", "head")


def personalization_configs(suite: Suite, base: Config, num_blocks: int) -> list[BenchConfig]:
    """The ``personalization`` group of ``suite`` (the catalogue gives it to ``paper``): on its
    ablation task and each of :data:`PARTITIONS`, layer skipping with each of :data:`MODES`
    (the sites scoring on their own test splits) and local-only training."""
    task = suite.sweep.ablation_task
    out = []
    for part in PARTITIONS:
        tag = "" if part == NATURAL else f"-{part.label}"
        for mode in MODES:
            settings: dict[str, Scalar] = {
                "task": task,
                "method": "layerskip",
                "lora-rank": 0,
                "eval-clients": True,
                "personalize": mode,
                **part.settings,
            }
            name = f"{task}-layerskip{tag}-" + ("sites" if mode == "none" else mode)
            labels: dict[str, Scalar] = {"partition": part.label, "personalize": mode}
            out.append(BenchConfig(name, settings, [PERSONALIZATION_GROUP], labels))
        local: dict[str, Scalar] = {
            "task": task,
            "method": "local",
            "layers": num_blocks,  # as the methods group's local-only baseline
            "epochs": base.rounds * base.local_epochs,
            "lora-rank": 0,
            **part.settings,
        }
        labels = {"partition": part.label, "personalize": "local"}
        out.append(BenchConfig(f"{task}-local{tag}", local, [PERSONALIZATION_GROUP], labels))
    return out


# --------------------------------------------------------------------------- federated optimisation
FED_OPTIM_GROUP = "fed-optim"

FED_OPTIM_CANDIDATES: tuple[Candidate, ...] = (
    Candidate("FedAvg, 1 local epoch", "", {}),
    Candidate("FedAvg, 4 local epochs", "le4", {"local-epochs": 4}),
    Candidate(
        "FedAdam (server lr 1e-2), 1 local epoch",
        "adam",
        {"server-optimizer": "adam", "server-lr": 1e-2},
    ),
)
"""The declared grid, fixed before any of its runs: plain averaging of one local epoch (the
suite's setting), four local epochs per round (with four sites, a round then takes as many
optimizer steps per site as a centralized epoch takes over the pooled notes) and a server
optimizer (Flower's FedAdam over the averaged update; server lr 1e-2 is ``fedskip run``'s
default: an Adam step moves each coordinate by about that much, the size of one round's client
update, 8 AdamW steps of lr 2e-3 at most). Chosen per seed on the validation split; this
tuning is not private."""


def federated_optimisation_configs(
    suite: Suite, base: Config, num_blocks: int
) -> list[BenchConfig]:
    """The ``fed-optim`` group of ``suite`` (the catalogue gives it to ``paper``): its
    other task's layer-skipping configuration (``<task>-layerskip``, the methods group's run)
    with each of :data:`FED_OPTIM_CANDIDATES`, labelled as alternatives to one another."""
    out = []
    for task in suite.sweep.tasks:
        if task == suite.sweep.ablation_task:
            continue  # NER: no candidates, its k = 2 run stays comparable with every other k
        name = f"{task}-layerskip"
        for i, option in enumerate(FED_OPTIM_CANDIDATES):
            settings: dict[str, Scalar] = {
                "task": task,
                "method": "layerskip",
                "lora-rank": 0,
                **option.settings,
            }
            labels: dict[str, Scalar] = {"partition": NATURAL.label, "candidate": option.label}
            if i:
                labels["candidate_for"] = name
            run = f"{name}-{option.suffix}" if option.suffix else name
            out.append(BenchConfig(run, settings, [FED_OPTIM_GROUP], labels))
    return out
