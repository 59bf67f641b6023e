"""Which privacy settings only warn (those refused are config rules: tests/test_config_rules.py)."""

from __future__ import annotations

import pytest

from fedskip.config import Config
from fedskip.privacy.checks import PrivacyWarning, check_privacy_config


def _cfg(**kw: object) -> Config:
    return Config.from_mapping({k.replace("_", "-"): v for k, v in kw.items()})


@pytest.mark.parametrize(
    "settings, match",
    [
        ({"dp": "sample", "grad_accum": 4}, "grad-accum=4 with dp=sample"),
        ({"dp": "sample", "noise_multiplier": 0.0}, "NOT noised"),
        ({"dp": "client", "fraction_train": 0.5}, "fraction-train=0.5"),
        ({"target_epsilon": 4.0}, "dp=none"),
        ({"dp": "client", "layer_strategy": "importance"}, "ε does not cover them"),
        ({"dp": "client", "personalize": "head"}, "not a site's own model or its export"),
    ],
)
def test_warned(settings: dict[str, object], match: str, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.warns(PrivacyWarning, match=match):
        messages = check_privacy_config(_cfg(**settings))
    assert len(messages) == 1
    assert "PRIVACY: " in caplog.text and match in caplog.text


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"dp": "sample", "secagg": True},
        {"dp": "client", "secagg": True, "layer_strategy": "rotating"},
        {"dp": "sample", "target_epsilon": 1.0, "noise_multiplier": 0.0},
        {"dp": "client", "dp_clipping": "adaptive"},
        {"dp": "sample", "personalize": "head+norms"},
    ],
)
def test_accepted_silently(settings: dict[str, object], recwarn: pytest.WarningsRecorder) -> None:
    assert check_privacy_config(_cfg(**settings)) == []
    assert not [w for w in recwarn if issubclass(w.category, PrivacyWarning)]
