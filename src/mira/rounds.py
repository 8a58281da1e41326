"""The round loop every runner shares, on the server: sample clients, send each what its algorithm
sends, collect the replies through a `Backend` (this process, or Flower nodes), screen them, apply
the server rule, evaluate, keep each client's best adapter on validation, write metrics,
checkpoints and the final adapters."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Protocol, Sequence

import torch
from tqdm.auto import tqdm

from .algorithms import ADAPTER, Algorithm, Message
from .algorithms.base import screen_replies
from .callbacks import Callback
from .checkpoint import CHECKPOINT, Checkpoint, load_checkpoint, remove_stale_temporaries, stage_checkpoint
from .client import ClientEvaluation, ClientUpdate
from .config import Config, FederationConfig, save_config
from .data import ClientData
from .errors import MiraError
from .lora import AdapterLayout, save_adapter
from .privacy import Accountant, releases_so_far
from .results import ADAPTERS, SELECTED, MetricsWriter, read_history, write_clients
from .selection import Selection
from .tracking import TENSORBOARD, RunTracker

log = logging.getLogger(__name__)


class Backend(Protocol):
    """Where clients train and evaluate: in this process, or on Flower nodes."""

    train_sizes: list[int]
    """Each client's number of training examples (its default privacy δ is the inverse)."""

    def train(self, sent: dict[int, Message], round_: int, optimizer_states: dict[int, dict], progress: bool,
              on_step=None) -> tuple[list[ClientUpdate], dict[str, int]]:
        """The replies of the clients sent `sent` (by client), and the round's `traffic` as measured
        on the way; `on_step(client_name, loss)` after each local step where the backend sees them
        (in process)."""

    def evaluate(self, thetas: torch.Tensor, clients: list[int], generate: bool, test: bool,
                 cross: dict[int, torch.Tensor], known: frozenset[int] = frozenset(),
                 answered: frozenset[int] = frozenset()) -> dict[int, ClientEvaluation]:
        """The evaluations of `clients`, each of its own adapter (row of `thetas`): validation loss and,
        with `test`, test loss (not for a client in `known`: the server has them); with `generate`,
        ROUGE-L and exact match (not for a client in `answered`); for a client in `cross`, also the loss
        of each of those adapters on its test set (its column of the global loss). Clients that failed
        are left out."""


@dataclass
class RunResult:
    run_dir: Path
    thetas: torch.Tensor
    history: list[dict]
    clients: list[ClientData]
    selection: Selection | None = None


def sample_clients(num_clients: int, fraction: float, count: int, seed: int, round_: int) -> list[int]:
    """The clients sampled in a round: `count` of them if > 0, else round(fraction·K), at least one;
    a pure function of (seed, round)."""
    n = count if count > 0 else max(1, round(fraction * num_clients))
    n = min(n, num_clients)
    return sorted(random.Random(f"sample-{seed}-{round_}").sample(range(num_clients), n))


def traffic(down: list[dict[str, int]], up: list[dict[str, int]], private: frozenset[str]) -> dict[str, int]:
    """A round's traffic from the size in bytes of every message entry sent (`down`) and received
    (`up`): the algorithm's entries each way, and its clients' private state (both ways together)."""
    def total(messages, state):
        return sum(size for message in messages for entry, size in message.items() if (entry in private) == state)
    return {"bytes_down": total(down, False), "bytes_up": total(up, False),
            "bytes_state": total(down, True) + total(up, True)}


def update_norm(sent: Message, reply: Message) -> float | None:
    """The norm of a client's update: of its own adapter where the messages hold it, else of all it
    returned (e.g. FFA-LoRA's B); None if the reply does not match what was sent."""
    entries = [ADAPTER] if ADAPTER in sent else list(sent)
    if any(e not in reply or reply[e].shape != sent[e].shape for e in entries):
        return None
    return float(sum((reply[e] - sent[e]).square().sum() for e in entries) ** 0.5)


def server_step(algorithm: Algorithm, thetas: torch.Tensor, sent: dict[int, Message], updates: list[ClientUpdate],
                names: list[str], round_: int, fcfg: FederationConfig,
                norm_history: dict[str, list[float]] | None = None) -> tuple[torch.Tensor, dict]:
    """Screen the replies (bounding update norms as fcfg says, against `norm_history`, which it updates)
    and apply the algorithm's server rule; returns the new state and the round's training record (with
    the norm of every returned adapter's update, before any bound)."""
    replies = {u.client: u.reply for u in updates}
    record = {"train_loss": {names[u.client]: u.train_loss for u in updates},
              "update_norm": {names[k]: norm for k, r in replies.items() if (norm := update_norm(sent[k], r)) is not None}}
    accepted, rejected = screen_replies(sent, replies, fcfg.max_update_norm, fcfg.clip_to_median,
                                        {k: algorithm.reply_template(message) for k, message in sent.items()},
                                        algorithm.reply_problem, norm_history)
    for k, reason in rejected.items():
        log.warning("round %d: rejected the update of client %s (%s); it keeps its last good adapter",
                    round_, names[k], reason)
    if rejected:
        record["rejected"] = {names[k]: reason for k, reason in rejected.items()}
    if accepted:
        sizes = {u.client: u.num_examples for u in updates}
        thetas = algorithm.aggregate(thetas, accepted, {k: sizes[k] for k in accepted})
    return thetas, record | algorithm.report()


def federated_round(cfg: Config, algorithm: Algorithm, backend: Backend, thetas: torch.Tensor, round_: int,
                    names: list[str], optimizer_states: dict[int, dict], progress: bool = False,
                    on_step=None, norm_history: dict[str, list[float]] | None = None,
                    accountant: Accountant | None = None) -> tuple[torch.Tensor, dict]:
    """One round: sample, send, train through `backend`, screen, apply the server rule. Returns the
    new state and the round's record (without evaluation). With an active `accountant`, a sampled
    client whose next release would pass privacy.target_epsilon is not asked to train (it keeps its
    adapter), and every client's ε is recorded."""
    begin = time.perf_counter()
    fcfg = cfg.federation
    sampled = sample_clients(len(names), fcfg.sample_fraction, fcfg.sample_count, cfg.seed, round_)
    private = accountant is not None and accountant.active
    spent = [k for k in sampled if private and not accountant.may_release(k)]
    for k in spent:
        log.info("round %d: client %s has spent its privacy budget (ε = %.3g; the next release would pass "
                 "privacy.target_epsilon = %g): it no longer releases and keeps its adapter", round_, names[k],
                 accountant.epsilon(k), cfg.privacy.target_epsilon)
    sent = {k: algorithm.send(thetas, k) for k in sampled if k not in spent}
    updates, measured = backend.train(sent, round_, optimizer_states, progress, on_step) if sent else ([], {})
    thetas, trained = server_step(algorithm, thetas, sent, updates, names, round_, fcfg, norm_history)
    record = {"round": round_, "sampled": [names[k] for k in sampled]} | measured | trained
    if private:
        accountant.record([u.client for u in updates])
        record |= ({"budget_spent": [names[k] for k in spent]} if spent else {}) | accountant.report(names)
    return thetas, record | {"train_seconds": time.perf_counter() - begin}


def global_loss_clients(cfg: Config, num_clients: int) -> list[int]:
    """The clients in the global loss (eval.global_loss_clients): every client, or a fixed sample (a
    function of the seed, the same at every evaluation) when there are more."""
    n = cfg.eval.global_loss_clients
    if not cfg.eval.global_loss:
        return []
    if n == 0 or n >= num_clients:
        return list(range(num_clients))
    return sorted(random.Random(f"global-loss-{cfg.seed}").sample(range(num_clients), n))


def summarise_evaluation(names: list[str], evaluations: dict[int, ClientEvaluation], rows: list[int] = ()) -> dict:
    """The round's metrics from the clients' evaluations: per-client and mean local (test) and
    validation loss; global loss (each adapter of `rows` on the pooled test sets of the clients that
    returned a column for them, token-weighted); generation scores. Clients missing from
    `evaluations` (failed) are left out of the means."""
    present = sorted(evaluations)
    out = {}
    for key in ("local_loss", "val_loss"):
        values = {names[k]: getattr(evaluations[k], key) for k in present if getattr(evaluations[k], key) is not None}
        if values:
            out |= {key: values, f"mean_{key}": fmean(values.values())}
    scored_sets = [j for j, k in enumerate(rows) if k in evaluations and evaluations[k].column is not None]
    if scored_sets:
        # adapters of `rows` x their test sets; NaN in the column of a client that failed
        matrix = torch.full((len(rows), len(rows)), float("nan"))
        for j in scored_sets:
            matrix[:, j] = torch.tensor(evaluations[rows[j]].column)
        weights = torch.tensor([float(evaluations[rows[j]].tokens) for j in scored_sets])
        glob = ((matrix[:, scored_sets] * weights).sum(dim=1) / weights.sum()).tolist()
        out |= {"global_loss": {names[k]: g for k, g in zip(rows, glob)}, "mean_global_loss": fmean(glob),
                "loss_matrix": matrix.tolist()}
        if len(rows) < len(names):
            out["global_loss_clients"] = [names[k] for k in rows]
    scored = [k for k in present if evaluations[k].scores is not None]
    for metric in ("rouge_l", "exact_match") if scored else ():
        values = {names[k]: evaluations[k].scores[metric] for k in scored}
        out |= {metric: values, f"mean_{metric}": fmean(values.values())}
    return out


def adapter_digest(theta: torch.Tensor) -> bytes:
    """A key for an adapter's content (its float32 bytes)."""
    return hashlib.blake2b(theta.detach().to("cpu", torch.float32).contiguous().numpy().tobytes(),
                           digest_size=16).digest()


class Evaluator:
    """Evaluation through a backend that computes only what changed: every loss and score is kept,
    keyed by the client whose data it was computed on and the content of the adapter, and reused while
    neither changes (under MIRA, Local, Ditto and FedSA-LoRA only the clients sampled since the last
    evaluation have new adapters; under FedIT every client shares one, scored once per test set in the
    global loss). The numbers are those a fresh evaluation gives; nothing is kept on disk, so a resumed
    run evaluates afresh."""

    def __init__(self, backend: Backend, cfg: Config, names: list[str]):
        self.backend, self.cfg, self.names = backend, cfg, names
        self.done: dict[tuple[int, bytes, bool], ClientEvaluation] = {}
        """(client, adapter, test): the client's evaluation of that adapter, without its column"""
        self.cells: dict[tuple[int, bytes], float] = {}
        """(client, adapter): the adapter's loss on the client's test set"""
        self.failed: set[int] = set()
        """The clients whose evaluation failed at the latest call (a node gone)"""
        self.generate_seconds = 0.0
        """The clients' seconds spent generating answers at the latest call, summed over them"""

    def __call__(self, thetas: torch.Tensor, full: bool, test: bool = True, retry: bool = True) -> dict:
        """The round's evaluation metrics (see `summarise_evaluation`) of every client's adapter: validation
        and local test loss; with `full`, also the global loss (if eval.global_loss), ROUGE-L and exact
        match; without `test`, validation only (the test sets are not read). Without `retry`, a client
        whose evaluation failed at the latest call is not asked again (its node is gone)."""
        generate = full and test
        rows = global_loss_clients(self.cfg, len(thetas)) if generate else []
        digests = [adapter_digest(theta) for theta in thetas]
        first = {}
        for r in rows:
            first.setdefault(digests[r], r)
        asked, cross, known_losses, answered, fresh = [], {}, set(), set(), {}
        for k, digest in enumerate(digests):
            known = self.done.get((k, digest, test))
            missing = [r for d, r in first.items() if (k, d) not in self.cells] if k in rows else []
            if not retry and k in self.failed:
                continue
            needs_answers = generate and (known is None or known.scores is None)
            if known is None or needs_answers or missing:
                asked.append(k)
                if missing:
                    cross[k] = missing
                if known is not None:
                    known_losses.add(k)
                if not needs_answers:
                    answered.add(k)
        if asked:
            fresh = self.backend.evaluate(thetas, asked, generate, test, {k: thetas[r] for k, r in cross.items()},
                                          frozenset(known_losses), frozenset(answered))
            self.failed = set(asked) - set(fresh)
            for k, evaluation in fresh.items():
                key = (k, digests[k], test)
                if k not in known_losses:
                    self.done[key] = dataclasses.replace(evaluation, column=None)
                    if evaluation.local_loss is not None:
                        self.cells[(k, digests[k])] = evaluation.local_loss
                elif evaluation.scores is not None:  # answers to add to losses computed before
                    self.done[key] = dataclasses.replace(self.done[key], scores=evaluation.scores)
                for r, loss in zip(cross.get(k, []), evaluation.column or []):
                    self.cells[(k, digests[r])] = loss
        evaluations = {}
        for k, digest in enumerate(digests):
            if (known := self.done.get((k, digest, test))) is not None:
                cells = [self.cells.get((k, digests[r])) for r in rows] if k in rows else None
                column = cells if cells is not None and None not in cells else None  # None: a client gone
                evaluations[k] = dataclasses.replace(known, column=column, scores=known.scores if generate else None)
        self.generate_seconds = sum(e.generate_seconds for e in fresh.values())
        return summarise_evaluation(self.names, evaluations, rows)


def check_run_dir(cfg: Config, overwrite: bool, resume: bool) -> None:
    """Refuse to start over an existing run unless asked to overwrite it (or resume it). A folder whose
    run stopped before its first checkpoint holds nothing to keep: it is started again."""
    run_dir = cfg.run_dir
    holds_run = (run_dir / CHECKPOINT).exists() or (run_dir / ADAPTERS).exists()
    if not resume and holds_run and not overwrite:
        raise FileExistsError(f"{run_dir} already holds a run; choose another name, pass --overwrite, "
                              f"or continue it with --resume {run_dir}")


@dataclass
class FederationState:
    """What a run carries from one round to the next, and its checkpoint holds: the last round done (0
    before any), every client's adapter, persistent optimiser states, the update norms that screening
    compares against, the model selection, the records so far and the privacy accountant. A fresh run
    and a resumed one differ only in how this is made."""

    round: int
    thetas: torch.Tensor
    optimizer_states: dict[int, dict]
    norm_history: dict[str, list[float]]
    selection: Selection
    history: list[dict]
    accountant: Accountant

    @classmethod
    def fresh(cls, cfg: Config, initial_theta: torch.Tensor, num_clients: int, backend: Backend) -> FederationState:
        thetas = initial_theta.expand(num_clients, -1).clone()
        return cls(0, thetas, {}, {}, Selection.start(thetas), [], Accountant(cfg.privacy, backend.train_sizes))

    @classmethod
    def resumed(cls, cfg: Config, names: list[str], layout: AdapterLayout, backend: Backend,
                algorithm: Algorithm) -> FederationState:
        """The state of the checkpoint in cfg.run_dir (the algorithm's own state is loaded into it)."""
        run_dir, checkpoint = cfg.run_dir, load_checkpoint(cfg.run_dir)
        expected = (len(names), layout.numel)
        if tuple(checkpoint.thetas.shape) != expected:
            raise MiraError(f"{run_dir}: the checkpoint holds adapters of shape {tuple(checkpoint.thetas.shape)}, "
                            f"this configuration makes {expected}")
        history = read_history(run_dir, up_to_round=checkpoint.round)
        if not history or history[-1]["round"] != checkpoint.round:
            raise MiraError(f"{run_dir}: the checkpoint is of round {checkpoint.round}, but metrics.jsonl records "
                            f"rounds up to {history[-1]['round'] if history else 'none'}; the run folder is inconsistent")
        algorithm.load_state_dict(checkpoint.server_state)
        return cls(checkpoint.round, checkpoint.thetas, checkpoint.optimizer_states,
                   {key: norms.tolist() for key, norms in checkpoint.screening.items()},
                   Selection.from_state_dict(checkpoint.selection, checkpoint.thetas), history,
                   Accountant(cfg.privacy, backend.train_sizes, releases_so_far(history, names)))

    def checkpoint(self, algorithm: Algorithm) -> Checkpoint:
        return Checkpoint(self.round, self.thetas, self.optimizer_states, algorithm.state_dict(),
                          self.selection.state_dict(), {key: torch.tensor(n) for key, n in self.norm_history.items()})


def _starting_state(cfg: Config, clients: list[ClientData], layout: AdapterLayout, initial_theta: torch.Tensor,
                    algorithm: Algorithm, backend: Backend, resume: bool) -> FederationState:
    """The checkpoint's state when resuming one; else a fresh state in a run folder cleared of any earlier
    run's state (`check_run_dir` refused to clear a finished one unless asked to)."""
    run_dir = cfg.run_dir
    if run_dir.is_dir():
        remove_stale_temporaries(run_dir)
    if resume and (run_dir / CHECKPOINT).is_file():
        state = FederationState.resumed(cfg, [c.name for c in clients], layout, backend, algorithm)
        log.info("resuming %s after round %d", run_dir, state.round)
        return state
    if resume and (run_dir / ADAPTERS).is_dir():
        raise MiraError(f"{run_dir}: this run finished without a checkpoint (checkpoint_every = 0), so it cannot "
                        "be resumed or extended; its results are kept. Start a new run (another name) instead")
    if resume:
        log.warning("%s: no checkpoint yet (the run stopped before its first round ended); starting it again",
                    run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CHECKPOINT).unlink(missing_ok=True)  # an overwritten run's state must not be resumed
    shutil.rmtree(run_dir / ADAPTERS, ignore_errors=True)
    shutil.rmtree(run_dir / TENSORBOARD, ignore_errors=True)
    write_clients(run_dir, clients)
    algorithm.start(initial_theta)
    return FederationState.fresh(cfg, initial_theta, len(clients), backend)


class Checkpointer(Callback):
    """Saves the federation's state every cfg.checkpoint_every rounds and after the last, in two steps:
    `stage` writes it to a temporary file before the round's record is written, noting the time it took
    (`checkpoint_seconds`, part of `wall_seconds`); `on_round_end`, after the other callbacks, puts it in
    place and tells the `callbacks` (their on_checkpoint). metrics.jsonl never lags the checkpoint."""

    def __init__(self, cfg: Config, state: FederationState, algorithm: Algorithm, callbacks: Sequence[Callback]):
        self.run_dir, self.every, self.rounds = cfg.run_dir, cfg.checkpoint_every, cfg.federation.rounds
        self.state, self.algorithm, self.callbacks = state, algorithm, callbacks
        self.staged: Path | None = None

    def stage(self, record: dict) -> None:
        round_ = record["round"]
        if round_ > 0 and self.every and (round_ % self.every == 0 or round_ == self.rounds):
            begin = time.perf_counter()
            self.staged = stage_checkpoint(self.run_dir, self.state.checkpoint(self.algorithm))
            spent = time.perf_counter() - begin
            record |= {"checkpoint_seconds": spent, "wall_seconds": record["wall_seconds"] + spent}

    def on_round_end(self, record: dict) -> None:
        if self.staged is not None:
            os.replace(self.staged, self.run_dir / CHECKPOINT)
            self.staged = None
            for callback in self.callbacks:
                callback.on_checkpoint(self.run_dir, record["round"])


class ModelSelection:
    """Per-client model selection: at every evaluation each client keeps its adapter if its validation
    loss is its lowest so far (`state.selection`); after the last round the selected adapters' test
    metrics join the round's record (`selected`), unless the run only validates (tuning). The round loop
    calls it before the checkpoint is staged, which saves the selection."""

    def __init__(self, state: FederationState, evaluate: Evaluator, last_round: int, test: bool):
        self.state, self.evaluate, self.last_round, self.test = state, evaluate, last_round, test

    def on_evaluation(self, round_: int, record: dict) -> None:
        selection, names = self.state.selection, self.evaluate.names
        if "val_loss" in record:
            selection.update(round_, record["val_loss"], names, self.state.thetas)
            record["mean_selected_val_loss"] = selection.summary(names)["mean_val_loss"]
        if self.test and 0 < round_ == self.last_round and selection.active:
            begin = time.perf_counter()
            # only where a selected adapter is not final, and not asking again a client that just failed
            selected = self.evaluate(selection.thetas, full=True, retry=False)
            record["selected"] = selection.summary(names) | {
                key: value for key, value in selected.items() if key.removeprefix("mean_") in EVALUATED}
            spent = time.perf_counter() - begin
            record |= {"eval_seconds": record["eval_seconds"] + spent, "wall_seconds": record["wall_seconds"] + spent,
                       "generate_seconds": record.get("generate_seconds", 0.0) + self.evaluate.generate_seconds}


def run_federation(cfg: Config, clients: list[ClientData], layout: AdapterLayout, initial_theta: torch.Tensor,
                   algorithm: Algorithm, backend: Backend, progress: bool = True, resume: bool = False,
                   callbacks: Sequence[Callback] = ()) -> RunResult:
    """The round loop: sampling, training through `backend`, screening and the server rule,
    evaluation, then the callbacks (model selection, metrics, progress, yours, checkpoints), and the
    final adapters.

    With `resume`, the run continues from its checkpoint. `callbacks`: `Callback`s called after each
    round, evaluation and checkpoint (tuning reports to its pruner from one); a fresh run takes the
    first round-0 evaluation one of them offers (`SharedInitialEvaluation`) instead of computing it.
    """
    run_dir, fcfg, names, test = cfg.run_dir, cfg.federation, [c.name for c in clients], cfg.eval.test_sets
    state = _starting_state(cfg, clients, layout, initial_theta, algorithm, backend, resume)
    save_config(cfg, run_dir / "config.toml")
    writer = MetricsWriter(run_dir, clients, state.history)
    tracker = RunTracker(run_dir, state.round + 1 if state.history else 0, fcfg.rounds, cfg.train.local_steps)
    evaluate = Evaluator(backend, cfg, names)

    def evaluation(record: dict, full: bool) -> dict:
        """The round's evaluation added to `record`, the time it took noted (and that of the answers)."""
        begin = time.perf_counter()
        record |= evaluate(state.thetas, full=full and test, test=test)
        answers = {"generate_seconds": evaluate.generate_seconds} if full and test else {}
        return record | {"eval_seconds": time.perf_counter() - begin} | answers

    selection = ModelSelection(state, evaluate, fcfg.rounds, test)
    checkpointer = Checkpointer(cfg, state, algorithm, callbacks)

    def close(record: dict, evaluated: bool) -> None:
        """Select models, stage the checkpoint where due, write the round's record, tell the tracker and the
        callbacks, put the checkpoint in place."""
        state.history.append(record)
        if evaluated:
            selection.on_evaluation(record["round"], record)
        checkpointer.stage(record)
        for callback in (writer, tracker, *callbacks, checkpointer):
            if evaluated:
                callback.on_evaluation(record["round"], record)
            callback.on_round_end(record)

    try:
        if not state.history:  # round 0: the initial adapters evaluated (or another run's evaluation of them)
            record = {"round": 0, "sampled": []}
            given = next((e for c in callbacks if (e := c.initial_evaluation()) is not None), None)
            if given is None:
                record = evaluation(record, full=True)
                record["wall_seconds"] = record["eval_seconds"]
            else:
                record |= given
            close(record, evaluated=True)
        rounds = tqdm(range(state.round + 1, fcfg.rounds + 1), desc=f"{fcfg.algorithm} rounds", disable=not progress,
                      initial=state.round, total=fcfg.rounds)
        for round_ in rounds:
            tracker.start(round_)
            begin = time.perf_counter()
            state.thetas, record = federated_round(cfg, algorithm, backend, state.thetas, round_, names,
                                                   state.optimizer_states, progress, tracker.local_step,
                                                   state.norm_history, state.accountant)
            state.round = round_
            last = round_ == fcfg.rounds
            evaluated = round_ % cfg.eval.eval_every == 0 or last
            if evaluated:
                record = evaluation(record, full=last)
                key = "mean_local_loss" if test else "mean_val_loss"
                if key in record:
                    rounds.set_postfix({key.removeprefix("mean_"): f"{record[key]:.3f}"})
                    log.info("round %d/%d: %s %.4f", round_, fcfg.rounds, key.removeprefix("mean_").replace("_", " "),
                             record[key])
            record["wall_seconds"] = time.perf_counter() - begin
            close(record, evaluated)
        save_adapters(run_dir, clients, state.thetas, layout, state.selection)
    finally:
        tracker.close()
    return RunResult(run_dir, state.thetas, state.history, clients, state.selection)


def save_adapters(run_dir: Path, clients: list[ClientData], thetas: torch.Tensor, layout: AdapterLayout,
                   selection: Selection) -> None:
    """The final (and selected) adapters, written whole or not at all: a run is finished once ADAPTERS exists."""
    partial = run_dir / f"{ADAPTERS}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    (partial / SELECTED).mkdir(parents=True)
    for k, client in enumerate(clients):
        meta = {"client": client.name, "family": client.family}
        save_adapter(partial / f"{client.name}.safetensors", thetas[k], layout, meta)
        if selection.active:
            save_adapter(partial / SELECTED / f"{client.name}.safetensors", selection.thetas[k], layout,
                         meta | {"round": str(int(selection.round[k]))})
    shutil.rmtree(run_dir / ADAPTERS, ignore_errors=True)
    partial.rename(run_dir / ADAPTERS)


EVALUATED = ("local_loss", "global_loss", "rouge_l", "exact_match")
"""The test metrics reported for the selected adapters."""
