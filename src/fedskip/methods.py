"""The training methods, one row each: what kind of method a ``method`` value names.

Every question "what kind of method is this?" — is it a federation, what does it train, does it
add FedProx's proximal term, does one model come out of it — is answered by this table, never by
comparing ``method`` strings. :mod:`fedskip.config` takes its allowed ``method`` values from it
and hands a run's row out as :attr:`fedskip.config.Config.method_kind`.

There are no per-method learning-rate defaults: every method starts from the config's ``lr`` /
``head-lr`` (suites set their own per method, :mod:`fedskip.bench`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Trains = Literal["blocks", "all", "lora"]
BLOCKS: Trains = "blocks"
"""The layer strategy's ``layers`` blocks plus the task head (and the final norm with the top
block); LoRA adapters inside those blocks instead when ``lora-rank`` > 0 (static strategies)."""
ALL: Trains = "all"
"""Every parameter, embeddings included, whatever ``layers`` says."""
LORA: Trains = "lora"
"""peft LoRA adapters in every block plus the task head."""


@dataclass(frozen=True)
class Method:
    """One training method: how it runs and what it trains (see :mod:`fedskip.trainability`)."""

    name: str
    federated: bool
    """Trained as a federation on Flower (rounds, checkpoints, resumable); otherwise one process
    trains on the data at hand."""
    trains: Trains
    """What a client (or the one process) trains: :data:`BLOCKS`, :data:`ALL` or :data:`LORA`."""
    proximal: bool = False
    """Clients add FedProx's proximal term (``proximal-mu``) to their loss."""
    pooled: bool = False
    """Trains one model on the union of every site's data, which must be here (not
    ``data=sites``)."""
    single_model: bool = True
    """One model comes out of the run (exported, audited); ``local`` ends with one per site."""
    full_model_baseline: bool = False
    """A baseline the method comparison trains with every block (``layers`` = all)."""

    @property
    def lora_in_blocks(self) -> bool:
        """``lora-rank`` > 0 puts LoRA adapters inside the selected blocks."""
        return self.trains == BLOCKS


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("layerskip", federated=True, trains=BLOCKS),
        Method("fedavg", federated=True, trains=ALL),
        Method("fedprox", federated=True, trains=BLOCKS, proximal=True, full_model_baseline=True),
        Method("lora", federated=True, trains=LORA),
        Method(
            "centralized", federated=False, trains=BLOCKS, pooled=True, full_model_baseline=True
        ),
        Method(
            "local", federated=False, trains=BLOCKS, single_model=False, full_model_baseline=True
        ),
    )
}
"""Every method by its ``method`` value, in the order ``fedskip config`` lists them."""
