"""Which privacy settings are refused, and which only warn."""

from __future__ import annotations

import pytest

from fedskip.config import Config
from fedskip.errors import ConfigError
from fedskip.privacy.checks import PrivacyWarning, check_privacy_config


def _cfg(**kw: object) -> Config:
    return Config.from_mapping({k.replace("_", "-"): v for k, v in kw.items()})


@pytest.mark.parametrize(
    "settings, match",
    [
        ({"secagg": True, "layer_strategy": "importance"}, "'layer-strategy': 'importance' cannot"),
        ({"secagg": True, "secagg_shares": 2}, "'secagg-shares': 2 must be >= 3"),
        ({"secagg": True, "secagg_shares": 3, "secagg_threshold": 3}, "'secagg-threshold': 3"),
        ({"secagg": True, "secagg_shares": 5, "secagg_threshold": 1}, "'secagg-threshold': 1"),
        ({"secagg": True, "dp": "client", "dp_clipping": "adaptive"}, "'dp-clipping'"),
        ({"secagg": True, "compression": "int8"}, "'compression'"),
        ({"dp": "sample", "delta": 0.0}, "'delta'"),
        ({"dp": "client", "clip_norm": 0.0}, "'clip-norm'"),
    ],
)
def test_refused(settings: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        check_privacy_config(_cfg(**settings))


@pytest.mark.parametrize(
    "settings, match",
    [
        ({"dp": "sample", "grad_accum": 4}, "grad-accum=4 with dp=sample"),
        ({"dp": "sample", "noise_multiplier": 0.0}, "NOT noised"),
        ({"dp": "client", "fraction_train": 0.5}, "fraction-train=0.5"),
        ({"target_epsilon": 4.0}, "dp=none"),
        ({"dp": "client", "layer_strategy": "importance"}, "ε does not cover them"),
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
    ],
)
def test_accepted_silently(settings: dict[str, object], recwarn: pytest.WarningsRecorder) -> None:
    assert check_privacy_config(_cfg(**settings)) == []
    assert not [w for w in recwarn if issubclass(w.category, PrivacyWarning)]
