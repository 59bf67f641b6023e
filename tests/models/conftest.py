"""Model tests run offline (no hub access even if the environment allows it), on few threads."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _offline_and_few_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.delenv("FEDSKIP_LLAMA_3_2_1B", raising=False)
    torch.set_num_threads(1)
