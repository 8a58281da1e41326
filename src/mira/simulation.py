"""In-process federated simulation: one base model in memory, each client's adapter swapped in."""

from __future__ import annotations

import logging
import random
import shutil
import time
from statistics import fmean
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from tqdm.auto import tqdm

from .algorithms import Algorithm, LocalPlan, build_algorithm
from .algorithms.base import screen_updates
from .checkpoint import CHECKPOINT, Checkpoint, load_checkpoint, remove_stale_temporaries, save_checkpoint
from .config import Config, ConfigError, FederationConfig, save_config
from .data import ClientData, load_clients
from .data.encode import Encoded, batch_schedule, encode
from .data.partition import summary as partition_summary
from .evaluate import losses_on, response_tokens
from .generation import generation_scores
from .graph import (GraphEstimator, check_step, family_graph, normalize_graph, random_graph, read_graph, uniform_graph,
                    validate_graph)
from .lora import AdapterLayout, AdapterSlot, save_adapter
from .model import attach_lora, load_base_model
from .results import ADAPTERS, METRICS_JSONL, SELECTED, MetricsWriter, read_history, write_clients
from .selection import Selection
from .tracking import TENSORBOARD, RunTracker
from .train import train_local

log = logging.getLogger(__name__)


def sample_clients(num_clients: int, fraction: float, count: int, seed: int, round_: int) -> list[int]:
    """The clients sampled in a round: `count` of them if > 0, else round(fraction·K), at least one;
    a pure function of (seed, round)."""
    n = count if count > 0 else max(1, round(fraction * num_clients))
    n = min(n, num_clients)
    return sorted(random.Random(f"sample-{seed}-{round_}").sample(range(num_clients), n))


def client_seed(seed: int, client: int, round_: int) -> int:
    """Seed for a client's local training in a round (dropout)."""
    return random.Random(f"train-{seed}-{client}-{round_}").getrandbits(63)


def build_graph(cfg: Config, clients: list[ClientData]) -> tuple[torch.Tensor, list[str]]:
    """The task graph named by `cfg.graph`, validated (and normalised if asked)."""
    k = len(clients)
    if cfg.graph.kind == "uniform" or (cfg.graph.kind == "learned" and not cfg.graph.path):
        adjacency, source = uniform_graph(k), "uniform graph"
    elif cfg.graph.kind == "ground_truth":
        adjacency, source = family_graph([c.family for c in clients]), "ground-truth family graph"
    elif cfg.graph.kind == "random":
        g = cfg.graph
        adjacency = random_graph(k, g.density, g.weight_min, g.weight_max, cfg.seed)
        source = f"random graph (density {g.density}, weights in [{g.weight_min}, {g.weight_max}])"
    else:
        adjacency, source = read_graph(cfg.graph.path), cfg.graph.path
    adjacency, notes = validate_graph(adjacency, k, source)
    if cfg.graph.normalize:
        adjacency = normalize_graph(adjacency)
    if cfg.federation.algorithm == "mira":
        check_step(cfg.federation.eta * cfg.federation.lam, adjacency, cfg.graph.force)
    return adjacency, notes


@dataclass
class ClientUpdate:
    """What a client returns after local training."""

    client: int
    theta: torch.Tensor
    num_examples: int
    train_loss: float
    optimizer_state: dict | None = None
    global_theta: torch.Tensor | None = None
    """Under a personal plan (Ditto): the client's trained copy of the global adapter."""


@dataclass
class Federation:
    """What clients need, built once: the shared model with its LoRA slot and the clients' data."""

    cfg: Config
    model: torch.nn.Module
    tokenizer: object
    slot: AdapterSlot
    clients: list[ClientData]
    train_sets: list[list[Encoded]]
    test_sets: list[list[Encoded]]
    initial_theta: torch.Tensor
    val_sets: list[list[Encoded]] = field(default_factory=list)
    offset: int = 0
    """Federation-wide index of clients[0]: non-zero on a Flower node that holds only its own client."""

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device = 'cuda' but no CUDA device is available; use device = 'auto' or 'cpu'")
    return torch.device(name)


def build_model(cfg: Config) -> tuple[torch.nn.Module, object, AdapterSlot]:
    """The base model with a fresh LoRA adapter (seeded by cfg.seed), its tokenizer and adapter slot."""
    model, tokenizer = load_base_model(cfg.model)
    model = attach_lora(model, cfg.model, cfg.seed).to(resolve_device(cfg.device))
    return model, tokenizer, AdapterSlot(model)


def build_federation(cfg: Config) -> Federation:
    """Load the base model, attach LoRA, load and encode the clients' data."""
    clients = load_clients(cfg.data, cfg.seed)
    model, tokenizer, slot = build_model(cfg)

    def enc(client: ClientData, part: str) -> list[Encoded]:
        encoded = [encode(e, tokenizer, cfg.model.max_length, cfg.model.prompt_format) for e in getattr(client, part)]
        empty = next((i for i, e in enumerate(encoded) if response_tokens([e]) == 0), None)
        if empty is not None:
            raise ConfigError(f"model.max_length = {cfg.model.max_length}: client {client.name}: {part} example "
                              f"{empty} keeps no response token to predict; raise model.max_length")
        return encoded

    return Federation(
        cfg=cfg, model=model, tokenizer=tokenizer, slot=slot, clients=clients,
        train_sets=[enc(c, "train") for c in clients], test_sets=[enc(c, "test") for c in clients],
        initial_theta=slot.get(), val_sets=[enc(c, "val") for c in clients])


@dataclass
class ClientEvaluation:
    """One client's evaluation of its adapter: on its test set (unless only validating), on its
    validation set (if it has one), and optionally more."""

    local_loss: float | None
    tokens: int
    """Response tokens scored in the client's test set (the weight of its set in the global loss)."""
    column: list[float] | None = None
    """Every client's adapter on this client's test set (for the global loss)."""
    scores: dict[str, float] | None = None
    """ROUGE-L and exact match of greedy answers."""
    val_loss: float | None = None


def compute_precision(fed: Federation):
    """The autocast context of model.autocast for the model's device (a no-op for 'none')."""
    device = fed.slot.params[0].device.type
    return torch.autocast(device, dtype=torch.bfloat16, enabled=fed.cfg.model.autocast == "bfloat16")


def evaluate_client(fed: Federation, k: int, theta: torch.Tensor, generate: bool,
                    all_thetas: torch.Tensor | None = None, test: bool = True) -> ClientEvaluation:
    """Client k's evaluation of `theta`: validation loss (if it has a validation set) and, with
    `test`, test loss; with `all_thetas`, also every client's adapter on its test set; with
    `generate`, ROUGE-L and exact match on the first eval.generate_per_client test examples.
    Without `test` the test set is not read at all (tuning)."""
    with compute_precision(fed):
        return _evaluate_client(fed, k, theta, generate, all_thetas, test)


def _evaluate_client(fed: Federation, k: int, theta: torch.Tensor, generate: bool,
                     all_thetas: torch.Tensor | None, test: bool) -> ClientEvaluation:
    ecfg, i = fed.cfg.eval, k - fed.offset
    val = fed.val_sets[i] if fed.val_sets else []
    val_loss = losses_on(fed.model, fed.slot, theta[None], val, ecfg.batch_size, fed.pad_id)[0] if val else None
    if not test:
        return ClientEvaluation(None, 0, val_loss=val_loss)
    test_set = fed.test_sets[i]
    column = None
    if all_thetas is not None:
        column = losses_on(fed.model, fed.slot, all_thetas, test_set, ecfg.batch_size, fed.pad_id)
    local = losses_on(fed.model, fed.slot, theta[None], test_set, ecfg.batch_size, fed.pad_id)[0]
    scores = None
    if generate and ecfg.generate_per_client > 0:
        n = ecfg.generate_per_client
        scores = generation_scores(fed.model, fed.tokenizer, fed.clients[i].test[:n], test_set[:n],
                                   ecfg.max_new_tokens, ecfg.batch_size)
    return ClientEvaluation(local, response_tokens(test_set), column, scores, val_loss)


def summarise_evaluation(names: list[str], evaluations: dict[int, ClientEvaluation]) -> dict:
    """The round's metrics from the clients' evaluations: per-client and mean local (test) and
    validation loss; global loss (each adapter on the pooled test sets, token-weighted) where columns
    came back; generation scores. Clients missing from `evaluations` (failed) are left out of the means."""
    present = sorted(evaluations)
    out = {}
    for key in ("local_loss", "val_loss"):
        values = {names[k]: getattr(evaluations[k], key) for k in present if getattr(evaluations[k], key) is not None}
        if values:
            out |= {key: values, f"mean_{key}": fmean(values.values())}
    if present and all(evaluations[k].column is not None for k in present):
        matrix = torch.full((len(names), len(names)), float("nan"))
        for k in present:
            matrix[:, k] = torch.tensor(evaluations[k].column)
        weights = torch.tensor([float(evaluations[k].tokens) for k in present])
        glob = ((matrix[:, present] * weights).sum(dim=1) / weights.sum()).tolist()
        out |= {"global_loss": dict(zip(names, glob)), "mean_global_loss": fmean(glob),
                "loss_matrix": matrix.tolist()}
    scored = [k for k in present if evaluations[k].scores is not None]
    for metric in ("rouge_l", "exact_match") if scored else ():
        values = {names[k]: evaluations[k].scores[metric] for k in scored}
        out |= {metric: values, f"mean_{metric}": fmean(values.values())}
    return out


def evaluate(fed: Federation, thetas: torch.Tensor, full: bool = False, test: bool = True) -> dict:
    """Validation and local test loss of every client's current adapter; with `full`, also the
    global loss (if eval.global_loss) and ROUGE-L and exact match; without `test`, validation only."""
    cross = thetas if full and test and fed.cfg.eval.global_loss else None
    return summarise_evaluation([c.name for c in fed.clients],
                                {k: evaluate_client(fed, k, thetas[k], full, cross, test)
                                 for k in range(len(fed.clients))})


def train_client(fed: Federation, k: int, theta: torch.Tensor, round_: int, plan: LocalPlan,
                 global_theta: torch.Tensor | None = None, optimizer_state: dict | None = None,
                 on_step=None) -> ClientUpdate:
    """Client k's local training from `theta` in a round, as `plan` says: its batches and dropout are
    fixed by (seed, k, round), so every runner gets the same numbers. Under a personal plan the
    client first trains `global_theta`, then its own adapter pulled towards `global_theta`."""
    cfg, data = fed.cfg, fed.train_sets[k - fed.offset]
    batches = batch_schedule(len(data), cfg.train.batch_size, cfg.train.local_steps, cfg.seed, k, round_)

    def train(start, anchor, mu, state):
        return train_local(fed.model, fed.slot, start, data, batches, cfg.train, fed.pad_id,
                           client_seed(cfg.seed, k, round_), state, on_step=on_step, anchor=anchor, mu=mu,
                           freeze_a=plan.freeze_a)

    with compute_precision(fed):
        trained_global = train(global_theta, None, 0.0, None).theta if plan.personal else None
        result = train(theta, global_theta if plan.personal else theta, plan.mu, optimizer_state)
    return ClientUpdate(k, result.theta, result.num_examples, result.mean_loss, result.optimizer_state, trained_global)


def train_sampled(fed: Federation, algorithm: Algorithm, thetas: torch.Tensor, round_: int, sampled: list[int],
                  optimizer_states: dict[int, dict], progress: bool = False, on_step=None) -> list[ClientUpdate]:
    """Local training of the sampled clients, in this process, one after the other;
    `on_step(client_name, loss)` after every optimiser step."""
    names = [c.name for c in fed.clients]
    updates = []
    passes = 2 if algorithm.plan.personal else 1
    steps = tqdm(total=len(sampled) * fed.cfg.train.local_steps * passes, leave=False, disable=not progress,
                 desc=f"round {round_}")
    for k in sampled:
        steps.set_postfix(client=names[k])
        update = train_client(fed, k, thetas[k], round_, algorithm.plan, algorithm.global_theta,
                              optimizer_states.get(k), on_step=lambda loss: _stepped(steps, on_step, names[k], loss))
        updates.append(update)
        if update.optimizer_state is not None:
            optimizer_states[k] = update.optimizer_state
    steps.close()
    return updates


def _stepped(bar, on_step, client: str, loss: float) -> None:
    bar.update()
    if on_step is not None:
        on_step(client, loss)


def server_step(algorithm: Algorithm, thetas: torch.Tensor, updates: list[ClientUpdate], names: list[str],
                round_: int, fcfg: FederationConfig) -> tuple[torch.Tensor, dict]:
    """Screen the returned adapters (bounding update norms as fcfg says) and apply the algorithm's
    server rule; returns the new state and the round's training record (with the norm of every
    returned update, before any bound)."""
    bounds = (fcfg.max_update_norm, fcfg.clip_to_median)
    record = {"train_loss": {names[u.client]: u.train_loss for u in updates},
              "update_norm": {names[u.client]: float((u.theta - thetas[u.client]).norm()) for u in updates
                              if u.theta.shape == thetas[u.client].shape}}
    trained, rejected = screen_updates(thetas, {u.client: u.theta for u in updates}, *bounds)
    for k, reason in rejected.items():
        log.warning("round %d: rejected the update of client %s (%s); it keeps its last good adapter",
                    round_, names[k], reason)
    if rejected:
        record["rejected"] = {names[k]: reason for k, reason in rejected.items()}
    if trained:
        sizes = {u.client: u.num_examples for u in updates}
        globals_ = {u.client: u.global_theta for u in updates if u.client in trained and u.global_theta is not None}
        if globals_:
            globals_, _ = screen_updates(algorithm.global_theta.expand(len(thetas), -1), globals_, *bounds)
        thetas = algorithm.aggregate(thetas, trained, {k: sizes[k] for k in trained}, globals_ or None)
    return thetas, record | algorithm.report()


@dataclass
class RunResult:
    run_dir: Path
    thetas: torch.Tensor
    history: list[dict]
    clients: list[ClientData]
    selection: Selection | None = None


class Backend(Protocol):
    """Where clients train and evaluate: in this process, or on Flower nodes."""

    def train(self, algorithm: Algorithm, thetas: torch.Tensor, round_: int, sampled: list[int],
              optimizer_states: dict[int, dict], progress: bool, on_step=None) -> list[ClientUpdate]:
        """The sampled clients' updates; `on_step(client_name, loss)` after each local step where the
        backend sees them (in process)."""

    bytes_per_value: int
    """What one adapter value costs on the wire (counted in each round's bytes_up/bytes_down)."""

    def evaluate(self, thetas: torch.Tensor, full: bool, test: bool = True) -> dict:
        """The round's evaluation metrics (see `evaluate`)."""


@dataclass
class InProcess:
    """Every client trains and evaluates in this process, on the one shared model."""

    fed: Federation
    bytes_per_value: int = 4  # float32, as a networked run would send them

    def train(self, algorithm, thetas, round_, sampled, optimizer_states, progress, on_step=None):
        return train_sampled(self.fed, algorithm, thetas, round_, sampled, optimizer_states, progress, on_step)

    def evaluate(self, thetas, full, test=True):
        return evaluate(self.fed, thetas, full, test)


def run(cfg: Config, overwrite: bool = False, progress: bool = True, fed: Federation | None = None,
        resume: bool = False, tuning: bool = False, on_evaluation=None, initial_evaluation: dict | None = None
        ) -> RunResult:
    """Run a federated training job in this process, writing config, metrics, a checkpoint after
    each round and the final adapters to cfg.run_dir. With `resume`, continue from its checkpoint;
    `tuning`, `on_evaluation` and `initial_evaluation` as in `run_federation`."""
    check_run_dir(cfg, overwrite, resume)
    fed = fed or build_federation(cfg)
    log.info("%d clients:\n%s", len(fed.clients), partition_summary(fed.clients))
    rule = build_server_rule(cfg, fed.clients, fed.slot.layout, fed.initial_theta)
    return run_federation(cfg, fed.clients, fed.slot.layout, fed.initial_theta, rule, InProcess(fed), progress, resume,
                          tuning, on_evaluation, initial_evaluation)


def build_server_rule(cfg: Config, clients: list[ClientData], layout: AdapterLayout,
                      initial_theta: torch.Tensor) -> Algorithm:
    """The algorithm of cfg.federation over the task graph of cfg.graph (notes on the graph logged);
    with graph.kind = 'learned' the graph starts there and is estimated from the adapters."""
    adjacency, notes = build_graph(cfg, clients)
    for note in notes:
        log.warning(note)
    estimator = None
    if cfg.graph.kind == "learned":
        g = cfg.graph
        estimator = GraphEstimator(adjacency, initial_theta, g.knn, g.threshold, g.update_every, g.smoothing,
                                   truth=family_graph([c.family for c in clients]))
    return build_algorithm(cfg.federation, adjacency, layout.lora_a_mask(), estimator)


def check_run_dir(cfg: Config, overwrite: bool, resume: bool) -> None:
    """Refuse to start over an existing run unless asked to overwrite it (or resume it). A folder whose
    run stopped before its first checkpoint holds nothing to keep: it is started again."""
    run_dir = cfg.run_dir
    holds_run = (run_dir / CHECKPOINT).exists() or (run_dir / ADAPTERS).exists()
    if not resume and holds_run and not overwrite:
        raise FileExistsError(f"{run_dir} already holds a run; choose another name, pass --overwrite, "
                              f"or continue it with --resume {run_dir}")


def federated_round(cfg: Config, algorithm: Algorithm, backend: Backend, thetas: torch.Tensor, round_: int,
                    names: list[str], optimizer_states: dict[int, dict], progress: bool = False,
                    on_step=None) -> tuple[torch.Tensor, dict]:
    """One round: sample, train through `backend`, screen, apply the server rule. Returns the new
    state and the round's record (without evaluation)."""
    begin = time.perf_counter()
    fcfg = cfg.federation
    sampled = sample_clients(len(names), fcfg.sample_fraction, fcfg.sample_count, cfg.seed, round_)
    updates = backend.train(algorithm, thetas, round_, sampled, optimizer_states, progress, on_step)
    traffic = len(sampled) * algorithm.values_per_client(thetas.shape[1]) * backend.bytes_per_value
    thetas, trained = server_step(algorithm, thetas, updates, names, round_, fcfg)
    return thetas, ({"round": round_, "sampled": [names[k] for k in sampled], "bytes_down": traffic,
                     "bytes_up": traffic} | trained | {"train_seconds": time.perf_counter() - begin})


def run_federation(cfg: Config, clients: list[ClientData], layout: AdapterLayout, initial_theta: torch.Tensor,
                   algorithm: Algorithm, backend: Backend, progress: bool = True, resume: bool = False,
                   tuning: bool = False, on_evaluation=None, initial_evaluation: dict | None = None) -> RunResult:
    """The round loop every runner shares: sampling, training through `backend`, screening and the
    server rule, evaluation and per-client model selection, metrics, checkpoints and final adapters.

    With `tuning` only validation losses are evaluated: the test sets are never read. After every
    evaluation `on_evaluation(round, record)` is called (tuning reports to its pruner there).
    `initial_evaluation`: the round-0 evaluation of another run from the same initial adapter and
    data (`mira compare` evaluates round 0 once per seed), used instead of evaluating again.
    """
    run_dir, fcfg = cfg.run_dir, cfg.federation
    names = [c.name for c in clients]
    test = not tuning
    if run_dir.is_dir():
        remove_stale_temporaries(run_dir)
    checkpoint = None
    if resume and (run_dir / CHECKPOINT).is_file():
        checkpoint = load_checkpoint(run_dir)
    elif resume:
        log.warning("%s: no checkpoint yet (the run stopped before its first round ended); starting it again",
                    run_dir)
    if checkpoint is None:
        start, optimizer_states = 1, {}
        thetas = initial_theta.expand(len(names), -1).clone()
        algorithm.start(initial_theta)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / CHECKPOINT).unlink(missing_ok=True)  # an overwritten run's state must not be resumed
        shutil.rmtree(run_dir / ADAPTERS, ignore_errors=True)
        shutil.rmtree(run_dir / TENSORBOARD, ignore_errors=True)
        save_config(cfg, run_dir / "config.toml")
        write_clients(run_dir, clients)
        writer = MetricsWriter(run_dir, clients)
        tracker = RunTracker(run_dir, 0, fcfg.rounds, cfg.train.local_steps)
        selection = Selection.start(thetas)
        record = {"round": 0, "sampled": []} | (initial_evaluation if initial_evaluation is not None
                                                 else backend.evaluate(thetas, full=test, test=test))
        _select(selection, record, names, thetas)
        writer.write(record)
        tracker.end(record)
        history = [record]
        if on_evaluation is not None:
            on_evaluation(0, record)
    else:
        expected = (len(names), layout.numel)
        if tuple(checkpoint.thetas.shape) != expected:
            raise ValueError(f"{run_dir}: the checkpoint holds adapters of shape {tuple(checkpoint.thetas.shape)}, "
                             f"this configuration makes {expected}")
        start, thetas, optimizer_states = checkpoint.round + 1, checkpoint.thetas, checkpoint.optimizer_states
        algorithm.load_state_dict(checkpoint.server_state)
        selection = Selection.from_state_dict(checkpoint.selection, thetas)
        history = read_history(run_dir, up_to_round=checkpoint.round)
        writer = MetricsWriter(run_dir, clients, history)
        tracker = RunTracker(run_dir, start, fcfg.rounds, cfg.train.local_steps)
        save_config(cfg, run_dir / "config.toml")
        log.info("resuming %s after round %d", run_dir, checkpoint.round)

    try:
        rounds = tqdm(range(start, fcfg.rounds + 1), desc=f"{fcfg.algorithm} rounds", disable=not progress,
                      initial=start - 1, total=fcfg.rounds)
        for round_ in rounds:
            tracker.start(round_)
            thetas, record = federated_round(cfg, algorithm, backend, thetas, round_, names, optimizer_states, progress,
                                             tracker.local_step)
            last = round_ == fcfg.rounds
            evaluated = round_ % cfg.eval.eval_every == 0 or last
            if evaluated:
                record |= backend.evaluate(thetas, full=last and test, test=test)
                _select(selection, record, names, thetas)
                key = "mean_local_loss" if test else "mean_val_loss"
                if key in record:
                    rounds.set_postfix({key.removeprefix("mean_"): f"{record[key]:.3f}"})
                    log.info("round %d/%d: %s %.4f", round_, fcfg.rounds, key.removeprefix("mean_").replace("_", " "),
                             record[key])
                if last and test and selection.active:
                    record["selected"] = selection.summary(names) | _evaluate_selected(backend, selection, thetas, record)
            writer.write(record)
            tracker.end(record)
            history.append(record)
            if evaluated and on_evaluation is not None:
                on_evaluation(round_, record)
            if cfg.checkpoint_every and (round_ % cfg.checkpoint_every == 0 or last):
                save_checkpoint(run_dir, Checkpoint(round_, thetas, optimizer_states, algorithm.state_dict(),
                                                    selection.state_dict()))

        partial = run_dir / f"{ADAPTERS}.partial"  # renamed when complete: a run is finished once ADAPTERS exists
        shutil.rmtree(partial, ignore_errors=True)
        (partial / SELECTED).mkdir(parents=True)
        for k, name in enumerate(names):
            meta = {"client": name, "family": clients[k].family}
            save_adapter(partial / f"{name}.safetensors", thetas[k], layout, meta)
            if selection.active:
                save_adapter(partial / SELECTED / f"{name}.safetensors", selection.thetas[k], layout,
                             meta | {"round": str(int(selection.round[k]))})
        shutil.rmtree(run_dir / ADAPTERS, ignore_errors=True)
        partial.rename(run_dir / ADAPTERS)
    finally:
        tracker.close()
    return RunResult(run_dir, thetas, history, clients, selection)


def evaluation_part(record: dict) -> dict:
    """A round's evaluation metrics without its round number and sampling (what `initial_evaluation`
    takes from another run's round-0 record)."""
    return {k: v for k, v in record.items() if k not in ("round", "sampled")}


def _select(selection: Selection, record: dict, names: list[str], thetas: torch.Tensor) -> None:
    """Update the selection with the record's validation losses; note their selected mean in it."""
    if "val_loss" in record:
        selection.update(record["round"], record["val_loss"], names, thetas)
        record["mean_selected_val_loss"] = selection.summary(names)["mean_val_loss"]


def _evaluate_selected(backend: Backend, selection: Selection, thetas: torch.Tensor, final: dict) -> dict:
    """Test metrics of the selected adapters (the final record's where they are the final adapters)."""
    evaluation = final if torch.equal(selection.thetas, thetas) else backend.evaluate(selection.thetas, full=True)
    return {k: v for k, v in evaluation.items() if k.removeprefix("mean_") in EVALUATED}


EVALUATED = ("local_loss", "global_loss", "rouge_l", "exact_match")
"""The test metrics reported for the selected adapters."""
