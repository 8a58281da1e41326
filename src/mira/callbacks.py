"""Callbacks: code of yours called from the round loop, as Hugging Face's TrainerCallback is from
Trainer's. Subclass `Callback` and override what you need; pass instances to `mira.run(callbacks=...)`.

    class PrintLoss(mira.Callback):
        def on_evaluation(self, round_, record):
            print(round_, record["mean_local_loss"])
"""

from __future__ import annotations

from pathlib import Path


class Callback:
    """Hooks of the round loop; each does nothing unless overridden."""

    def on_round_end(self, record: dict) -> None:
        """After every round (and round 0, the initial evaluation): the round's record, as written to
        metrics.jsonl (sampled clients, training loss, traffic, timings; evaluation where it evaluated)."""

    def on_evaluation(self, round_: int, record: dict) -> None:
        """After every evaluation (round 0, every eval.eval_every rounds, the last round)."""

    def on_checkpoint(self, run_dir: Path, round_: int) -> None:
        """After the checkpoint of `round_` is written to `run_dir`."""
