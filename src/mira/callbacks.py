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

    def initial_evaluation(self) -> dict | None:
        """Before round 0 of a fresh run: a round-0 evaluation to use instead of computing it (another
        run's, from the same initial adapters and data), or None."""
        return None


class SharedInitialEvaluation(Callback):
    """One round-0 evaluation for several runs from the same initial adapters and data (`mira compare`'s
    sub-runs of a seed, `mira tune`'s trials): given one, or else keeping the first run's for the next."""

    def __init__(self, record: dict | None = None):
        self.record = record

    def initial_evaluation(self) -> dict | None:
        return self.record

    def on_evaluation(self, round_: int, record: dict) -> None:
        if round_ == 0 and self.record is None:
            self.record = evaluation_part(record)


def evaluation_part(record: dict) -> dict:
    """A round's evaluation metrics without its round number, sampling and timings."""
    return {k: v for k, v in record.items() if k not in ("round", "sampled") and not k.endswith("_seconds")}
