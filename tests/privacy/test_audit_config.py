"""``audit-canaries`` / ``audit-guesses``: bad values are one-line config errors (exit 2)."""

from __future__ import annotations

import pytest

from fedskip.cli import main
from fedskip.config import Config
from fedskip.errors import ConfigError


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("audit-canaries=-1", "config key 'audit-canaries': -1 must be >= 0"),
        ("audit-canaries=2.5", "config key 'audit-canaries': '2.5' is not an integer"),
        ("audit-canaries=many", "config key 'audit-canaries': 'many' is not an integer"),
        ("audit-guesses=-2", "config key 'audit-guesses': -2 must be >= 0"),
        ("audit-confidence=1", "config key 'audit-confidence': 1.0 must be <= 0.999"),
    ],
)
def test_bad_values_exit_2_in_one_line(
    setting: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--set", setting]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"fedskip: error: {message}"]


def test_more_guesses_than_canaries() -> None:
    with pytest.raises(ConfigError, match="'audit-guesses': 9 exceeds audit-canaries \\(8\\)"):
        Config(audit_canaries=8, audit_guesses=9)


@pytest.mark.parametrize(
    ("changes", "what"),
    [
        (dict(data="sites", labels="problem"), "data=sites"),
        (dict(method="local"), "method=local"),
    ],
)
def test_no_audit_where_no_one_can_audit(changes: dict[str, str], what: str) -> None:
    with pytest.raises(ConfigError, match=f"no privacy audit with {what}"):
        Config(audit_canaries=8, **changes)


def test_a_float_in_code_is_rejected_too() -> None:
    with pytest.raises(ConfigError, match="'audit-canaries': 2.5 is not an integer"):
        Config(audit_canaries=2.5)  # type: ignore[arg-type]


def test_guesses_default_to_half_the_canaries() -> None:
    assert Config(audit_canaries=33).audit_guess_count() == 16
    assert Config(audit_canaries=33, audit_guesses=20).audit_guess_count() == 20
