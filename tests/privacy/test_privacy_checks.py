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


def test_privacy_and_data_warnings_reach_the_console_once_each(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import logging

    from fedskip.cli import console_warnings
    from fedskip.privacy.checks import warn_loudly

    with console_warnings():
        warn_loudly("noise off")  # a Python warning and a log record: one console line
        logging.getLogger("fedskip.data.readers").warning("a.ann:3: widened")
        logging.getLogger("fedskip.fl.strategy.core").warning("not for the console")
        logging.getLogger("flwr").warning("Flower's own handler prints this one")
    err = capsys.readouterr().err
    fedskip_lines = [line for line in err.splitlines() if line.startswith("fedskip: ")]
    assert fedskip_lines == [
        "fedskip: warning: PRIVACY: noise off",
        "fedskip: warning: a.ann:3: widened",
    ]


def test_a_client_workers_privacy_warnings_are_relayed_once(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fedskip.runs.simulation import WorkerWarnings

    log = tmp_path / "run.log"
    log.write_text("2026-01-01 10:00:00,000 WARNING fedskip.privacy: PRIVACY: before the run\n")
    relay = WorkerWarnings(log)
    worker = "2026-01-01 10:00:01,000 WARNING fedskip.privacy [worker {pid}]: PRIVACY: {text}\n"
    with log.open("a") as fh:
        fh.write(worker.format(pid=7, text="DP-SGD with noise-multiplier=0"))
        fh.write("2026-01-01 10:00:01,000 INFO fedskip.federation.client [worker 7]: trained\n")
        fh.write(worker.format(pid=8, text="DP-SGD with noise-multiplier=0"))  # another client
        fh.write(worker.format(pid=8, text="this site")[:-1])  # not a whole line yet
    relay.relay()
    assert capsys.readouterr().err == (
        "fedskip: warning: PRIVACY: DP-SGD with noise-multiplier=0 (a client)\n"
    )
    with log.open("a") as fh:
        fh.write(" has 3\n")
    with relay:  # the end of a run relays what is left
        pass
    assert capsys.readouterr().err == "fedskip: warning: PRIVACY: this site has 3 (a client)\n"


def test_centralized_without_noise_warns_on_the_console_and_writes_inf(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from fedskip.cli import main
    from tests.test_centralized_cli import i2b2_files

    for rel, text in i2b2_files("site-a", 8).items():
        (tmp_path / "data" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / rel).write_text(text)
    sets = [f"data={tmp_path / 'data'}", "model=llama-tiny", "device=cpu", "epochs=1"]
    sets += ["batch-size=2", "max-length=32", "stride=8", "dp=sample", "noise-multiplier=0"]
    assert main(["centralized", "--quiet", "--set", *sets, f"out={tmp_path / 'run'}"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "fedskip: warning: PRIVACY: DP-SGD with noise-multiplier=0: gradients are clipped but "
        "not noised (ε = inf)"
    ]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["dp"], summary["epsilon"]) == ("sample", "inf")
