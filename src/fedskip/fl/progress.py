"""Live progress of a federated run: one line per round (rich), silent with ``quiet``.

During a round the phase (``training: 2/4 clients done``) shows with the time spent in the
round, the run's elapsed time and an estimate of what is left (:class:`RunClock`: the mean
duration of the rounds done so far, those before a resume included, times the rounds to go,
less what the current round has run). On a terminal (or in Jupyter) that is a spinner whose
clock ticks; elsewhere — a Deployment Engine's ServerApp streaming its log through ``flwr
run``, output piped to a file — one plain line per phase change, so the same figures reach
both engines' consoles.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from fedskip.records.schema import MetricsRow


def human_bytes(n: float) -> str:
    """``1234567`` → ``'1.23 MB'`` (decimal units)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} GB"  # pragma: no cover


def clock_text(seconds: float) -> str:
    """``42`` → ``'42 s'``, ``125`` → ``'2:05'``, ``3725`` → ``'1:02:05'`` (whole seconds)."""
    whole = max(int(round(seconds)), 0)
    if whole < 60:
        return f"{whole} s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class RunClock:
    """Elapsed time of a run and an estimate of what is left, from the durations (seconds) of
    the rounds done; ``clock``: seconds from any origin (injectable for tests), ``done``: the
    durations of rounds completed before this process (a resumed run)."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, *, done: Sequence[float] = ()
    ) -> None:
        self.clock = clock
        self.started = clock()
        self.durations = [float(s) for s in done]
        self.last_round = len(self.durations)
        self.current: int | None = None
        """The round in progress (None between rounds)."""
        self.round_started = self.started

    def begin(self, server_round: int) -> None:
        """Round ``server_round`` is under way (repeated calls for the same round: no-op)."""
        if self.current != server_round:
            self.current, self.round_started = server_round, self.clock()

    def end(self, server_round: int, seconds: float) -> None:
        """Round ``server_round`` ended after ``seconds``."""
        self.durations.append(float(seconds))
        self.current, self.last_round = None, server_round

    def elapsed(self) -> float:
        """Seconds since this process's part of the run began."""
        return self.clock() - self.started

    def in_round(self) -> float:
        """Seconds the round in progress has run (0 between rounds)."""
        return 0.0 if self.current is None else self.clock() - self.round_started

    def per_round(self) -> float | None:
        """The mean duration of the rounds done (None before the first ends)."""
        return sum(self.durations) / len(self.durations) if self.durations else None

    def left(self, total: int) -> float | None:
        """Seconds to the end of round ``total``: the mean round for every round to go, the one
        in progress counted as its remainder (never below 0); None with no round done yet."""
        per = self.per_round()
        if per is None:
            return None
        if self.current is None:
            return per * max(total - self.last_round, 0)
        return max(per - self.in_round(), 0.0) + per * max(total - self.current, 0)

    def round_text(self, total: int) -> str:
        """During a round: ``'0:42 in this round of ~1:01; run 2:05, ~7:40 left'``."""
        per = self.per_round()
        typical = "" if per is None else f" of ~{clock_text(per)}"
        return f"{clock_text(self.in_round())} in this round{typical}; {self.run_text(total)}"

    def run_text(self, total: int) -> str:
        """``'run 2:05, ~7:40 left'`` (``'run 2:05'`` when nothing is left or unknown)."""
        left = self.left(total)
        text = f"run {clock_text(self.elapsed())}"
        return text if not left else f"{text}, ~{clock_text(left)} left"


class _PhaseText:
    """The spinner's text, rendered afresh on every refresh so that its clock ticks."""

    def __init__(self, reporter: RoundReporter) -> None:
        self.reporter = reporter

    def __rich__(self) -> Any:
        from rich.text import Text

        return Text(self.reporter.phase_text())


class RoundReporter:
    """Prints the run header, the phase of each round with its timing, a line per round and the
    final summary (nothing when quiet). ``clock``: see :class:`RunClock`."""

    def __init__(
        self, *, quiet: bool, primary: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.quiet = quiet
        self.primary = primary
        self.console: Any = None
        self.status: Any = None
        self.timing = RunClock(clock)
        self.current = (0, 0, "")
        """(round, total rounds, phase) shown now."""
        if not quiet:
            from rich.console import Console

            self.console = Console(highlight=False)

    def start(self, header: str, *, done: Sequence[float] = ()) -> None:
        """Print the header; ``done``: the durations of the rounds before a resume (they count
        in the estimate)."""
        self.timing = RunClock(self.timing.clock, done=done)
        if self.console is not None:
            self.console.print(f"[bold]{header}[/bold]", soft_wrap=True)

    def phase_text(self) -> str:
        server_round, total, name = self.current
        return f"round {server_round}/{total}: {name}… {self.timing.round_text(total)}"

    def phase(self, server_round: int, total: int, name: str) -> None:
        """Show what the current round is doing and its timing: a spinner whose clock ticks on
        a terminal, else one line per call."""
        self.timing.begin(server_round)
        self.current = (server_round, total, name)
        if self.console is None:
            return
        if not (self.console.is_terminal or self.console.is_jupyter):
            self.console.print(self.phase_text(), soft_wrap=True, markup=False)
        elif self.status is None:
            self.status = self.console.status(_PhaseText(self))
            self.status.start()

    def close(self) -> None:
        """Stop the spinner (also when the run ends with an error)."""
        self._stop_status()

    def _stop_status(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None

    def round(self, row: MetricsRow, total: int) -> None:
        self.timing.end(row.step, row.seconds)
        if self.console is None:
            return
        self._stop_status()
        score_text = self.score_text(row)
        loss = row.train_loss
        loss_text = f"loss {loss:.4f}" if isinstance(loss, float) else "loss –"
        status = "[red]FAILED[/red] " if row.status == "failed" else ""
        layers = row.selected_layers
        layers_text = f"  blocks {layers}" if layers else ""
        self.console.print(
            f"round {row.round}/{total} {status}{loss_text}  {score_text}  "
            f"↑{human_bytes(row.bytes_up)} ↓{human_bytes(row.bytes_down)}  "
            f"replies {row.replies_ok} ok / {row.replies_rejected} rejected{layers_text}  "
            f"{row.seconds:.1f} s; {self.timing.run_text(total)}",
            soft_wrap=True,
        )
        sites = self.sites_text(row)
        if sites:
            self.console.print(f"  {sites}", soft_wrap=True, markup=False)
        for line in row.rejections:
            self.console.print(f"  [yellow]{line}[/yellow]", soft_wrap=True)
        if row.failure:
            self.console.print(f"  [red]{row.failure}[/red]", soft_wrap=True)

    def score_text(self, row: MetricsRow) -> str:
        """The round's primary metric: on the global test set, else the sites' federated
        evaluation (a coordinator without test data), marked ``(sites)``."""
        score = row.scores.get(self.primary)
        if isinstance(score, (int, float)):
            return f"{self.primary} {score:.4f}"
        mean = row.client_eval.get(self.primary)
        if isinstance(mean, (int, float)):
            return f"{self.primary} {mean:.4f} (sites)"
        return "no eval"

    def sites_text(self, row: MetricsRow) -> str:
        """Each site's primary metric of the global model this round ("" when none scored)."""
        scores = [
            f"{site} {figures[self.primary]:.4f}"
            for site, figures in row.site_eval.items()
            if isinstance(figures.get(self.primary), (int, float))
        ]
        return f"per site {self.primary}: " + ", ".join(scores) if scores else ""

    def note(self, text: str) -> None:
        self._stop_status()
        if self.console is not None:
            self.console.print(text, soft_wrap=True)
