"""Live progress of a federated run: one line per round (rich), silent with ``quiet``."""

from __future__ import annotations

from typing import Any

from fedskip.runs.schema import MetricsRow


def human_bytes(n: float) -> str:
    """``1234567`` → ``'1.23 MB'`` (decimal units)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} GB"  # pragma: no cover


class RoundReporter:
    """Prints the run header, a line per round and the final summary (nothing when quiet)."""

    def __init__(self, *, quiet: bool, primary: str) -> None:
        self.quiet = quiet
        self.primary = primary
        self.console: Any = None
        self.status: Any = None
        if not quiet:
            from rich.console import Console

            self.console = Console(highlight=False)

    def start(self, header: str) -> None:
        if self.console is not None:
            self.console.print(f"[bold]{header}[/bold]", soft_wrap=True)

    def phase(self, server_round: int, total: int, name: str) -> None:
        """Show what the current round is doing (a spinner on a terminal)."""
        if self.console is None:
            return
        text = f"round {server_round}/{total}: {name}…"
        if self.status is None:
            self.status = self.console.status(text)
            self.status.start()
        else:
            self.status.update(text)

    def close(self) -> None:
        """Stop the spinner (also when the run ends with an error)."""
        self._stop_status()

    def _stop_status(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None

    def round(self, row: MetricsRow, total: int) -> None:
        if self.console is None:
            return
        self._stop_status()
        score = row.scores.get(self.primary)
        score_text = f"{self.primary} {score:.4f}" if isinstance(score, float) else "no eval"
        loss = row.train_loss
        loss_text = f"loss {loss:.4f}" if isinstance(loss, float) else "loss –"
        status = "[red]FAILED[/red] " if row.status == "failed" else ""
        layers = row.selected_layers
        layers_text = f"  blocks {layers}" if layers else ""
        self.console.print(
            f"round {row.round}/{total} {status}{loss_text}  {score_text}  "
            f"↑{human_bytes(row.bytes_up)} ↓{human_bytes(row.bytes_down)}  "
            f"replies {row.replies_ok} ok / {row.replies_rejected} rejected{layers_text}  "
            f"{row.seconds:.1f} s",
            soft_wrap=True,
        )
        for line in row.rejections:
            self.console.print(f"  [yellow]{line}[/yellow]", soft_wrap=True)
        if row.failure:
            self.console.print(f"  [red]{row.failure}[/red]", soft_wrap=True)

    def note(self, text: str) -> None:
        self._stop_status()
        if self.console is not None:
            self.console.print(text, soft_wrap=True)
