"""The in-process simulator: one base model in memory, every client in one workspace, each client's
adapter swapped in when it trains or is evaluated; the shared round loop on top."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .algorithms import algorithm_class, build_algorithm
from .client import (
    ClientEvaluation,
    ClientUpdate,
    ClientWorkspace,
    build_workspace,
    evaluate_client,
    evaluation_precision,
    train_client,
)
from .config import Config
from .data.partition import summary as partition_summary
from .rounds import Evaluator, RunResult, check_run_dir, run_federation, traffic

log = logging.getLogger(__name__)


@dataclass
class InProcess:
    """The `Backend` where every client trains and evaluates in this process, on the one shared model."""

    ws: ClientWorkspace
    progress: bool = True  # a bar over the clients while evaluating
    bytes_per_value: int = 4  # float32, as a networked run sends them

    @property
    def train_sizes(self) -> list[int]:
        return [len(examples) for examples in self.ws.train_sets]

    def train(self, sent, round_, optimizer_states, progress, on_step=None) -> tuple[list[ClientUpdate], dict]:
        """The sampled clients' client steps, one after the other; traffic as the float32 size of
        every message entry."""
        names = [c.name for c in self.ws.clients]
        algorithm = algorithm_class(self.ws.cfg.federation.algorithm)
        passes = algorithm.training_passes
        steps = tqdm(total=len(sent) * self.ws.cfg.train.local_steps * passes, leave=False, disable=not progress,
                     desc=f"round {round_}")
        updates = []
        for k, received in sent.items():
            steps.set_postfix(client=names[k])

            def stepped(loss, name=names[k]):
                steps.update()
                if on_step is not None:
                    on_step(name, loss)

            update = train_client(self.ws, k, received, round_, optimizer_states.get(k), on_step=stepped)
            updates.append(update)
            if update.optimizer_state is not None:
                optimizer_states[k] = update.optimizer_state
        steps.close()
        return updates, traffic([self._sizes(m) for m in sent.values()], [self._sizes(u.reply) for u in updates],
                                algorithm.private)

    def _sizes(self, message) -> dict[str, int]:
        return {entry: tensor.numel() * self.bytes_per_value for entry, tensor in message.items()}

    def evaluate(self, thetas: torch.Tensor, clients: list[int], generate: bool, test: bool,
                 cross: dict[int, torch.Tensor], known: frozenset[int] = frozenset(),
                 answered: frozenset[int] = frozenset()) -> dict[int, ClientEvaluation]:
        bar = tqdm(clients, leave=False, disable=not self.progress,
                   desc="evaluating" + (" (global loss, ROUGE-L)" if generate else ""))
        with evaluation_precision(self.ws):  # the weights cast once for every client evaluated here
            return {k: evaluate_client(self.ws, k, thetas[k], generate and k not in answered, cross.get(k), test,
                                       losses=k not in known) for k in bar}


def evaluate(ws: ClientWorkspace, thetas: torch.Tensor, full: bool, test: bool = True) -> dict:
    """The evaluation metrics of `thetas` (one adapter per client of `ws`), computed afresh (see `Evaluator`)."""
    return Evaluator(InProcess(ws, progress=False), ws.cfg, [c.name for c in ws.clients])(thetas, full, test)


def run(cfg: Config, overwrite: bool = False, progress: bool = True, ws: ClientWorkspace | None = None,
        resume: bool = False, callbacks=()) -> RunResult:
    """Run a federated training job in this process, writing config, metrics, a checkpoint after
    each round and the final adapters to cfg.run_dir. With `resume`, continue from its checkpoint;
    `callbacks` as in `run_federation`."""
    check_run_dir(cfg, overwrite, resume)
    ws = ws or build_workspace(cfg)
    log.info("%d clients:\n%s", len(ws.clients), partition_summary(ws.clients))
    algorithm = build_algorithm(cfg, ws.clients, ws.slot.layout, ws.initial_theta)
    return run_federation(cfg, ws.clients, ws.slot.layout, ws.initial_theta, algorithm, InProcess(ws, progress),
                          progress, resume, callbacks)
