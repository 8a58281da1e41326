"""Run tracking: TensorBoard event files of a run (`tensorboard --logdir runs/`), and one log line
per round when the output is not a terminal (no progress bars to watch)."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import torch

from .callbacks import Callback

log = logging.getLogger(__name__)
TENSORBOARD = "tensorboard"
"""The folder of a run's event files, inside its run directory."""
SCALARS = ("mean_train_loss", "mean_val_loss", "mean_local_loss", "mean_global_loss", "mean_selected_val_loss",
           "mean_rouge_l", "mean_exact_match", "bytes_up", "bytes_down", "bytes_state", "edge_precision", "edge_recall",
           "mean_epsilon", "max_epsilon", "train_seconds", "eval_seconds", "generate_seconds", "checkpoint_seconds",
           "wall_seconds")


class RunTracker(Callback):
    """A callback of the round loop that writes what a run measures to TensorBoard: every round's scalars and per-client losses and the
    learned task graph as an image (steps: rounds), and in `local_steps/` each client's training loss
    at every local step (`train_loss/<client>`; steps: local steps); logs one line per round (time,
    training loss, ETA) where stderr is not a terminal. A resumed run drops what the killed run
    wrote after its checkpoint."""

    def __init__(self, run_dir: Path, start_round: int, rounds: int, local_steps: int):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / TENSORBOARD), purge_step=start_round)
        self.step_writer = SummaryWriter(str(run_dir / TENSORBOARD / "local_steps"),
                                         purge_step=max(0, start_round - 1) * local_steps + 1)
        self.start_round, self.rounds, self.local_steps = start_round, rounds, local_steps
        self.begin = time.monotonic()
        self.steps: dict[str, int] = {}
        self.round_ = start_round
        self.quiet_terminal = sys.stderr.isatty()

    def local_step(self, client: str, loss: float) -> None:
        """One optimiser step of `client` in the current round."""
        i = self.steps[client] = self.steps.get(client, 0) + 1
        self.step_writer.add_scalar(f"train_loss/{client}", loss, (self.round_ - 1) * self.local_steps + i)

    def start(self, round_: int) -> None:
        self.round_, self.steps = round_, {}

    def on_round_end(self, record: dict) -> None:
        """The round's record (training, and evaluation where the round evaluated)."""
        round_ = record["round"]
        if record.get("train_loss"):
            record = record | {"mean_train_loss": sum(record["train_loss"].values()) / len(record["train_loss"])}
        for key in SCALARS:
            if key in record:
                self.writer.add_scalar(key, record[key], round_)
        for key in ("local_loss", "val_loss", "global_loss", "epsilon"):
            for client, value in record.get(key, {}).items():
                self.writer.add_scalar(f"{key}/{client}", value, round_)
        if "learned_graph" in record:
            graph = torch.tensor(record["learned_graph"])
            self.writer.add_image("learned_graph", (graph / graph.max().clamp(min=1e-12))[None], round_)
        self.writer.flush()
        self.step_writer.flush()
        if round_ > 0 and not self.quiet_terminal:
            done = round_ - self.start_round + 1
            elapsed = time.monotonic() - self.begin
            eta = elapsed / done * (self.rounds - round_)
            loss = record.get("mean_train_loss", float("nan"))
            log.info("round %d/%d done in %.1f s: mean training loss %.4f; ETA %s", round_, self.rounds,
                     record.get("train_seconds", 0.0), loss, time.strftime("%H:%M:%S", time.gmtime(eta)))

    def close(self) -> None:
        self.writer.close()
        self.step_writer.close()
