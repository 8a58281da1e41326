"""The client side: a workspace holding the shared base model and some clients' encoded data, and
what one client does there — train in a round (as its algorithm's client step says) and evaluate.

The in-process simulator holds every client in one workspace; a Flower node holds its own. Clients
are named by their federation-wide index k (which fixes their batches and dropout), so every runner
gets the same numbers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import time
from dataclasses import dataclass
from functools import cached_property

import torch

from .algorithms import Message, adapter_key, algorithm_class
from .config import Config, ConfigError
from .data import ClientData, load_clients
from .data.encode import Encoded, batch_schedule, collate, encode
from .errors import MiraError
from .evaluate import losses_on, response_loss, response_tokens
from .generation import generation_scores
from .lora import AdapterSlot
from .model import attach_adapter, load_base_model, prepare_base_model
from .privacy import noise_generator, privatize
from .train import train_local


def client_seed(seed: int, client: int, round_: int) -> int:
    """Seed for a client's local training in a round (dropout)."""
    return random.Random(f"train-{seed}-{client}-{round_}").getrandbits(63)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise MiraError("device = 'cuda' but no CUDA device is available; use device = 'auto' or 'cpu'")
    return torch.device(name)


def build_model(cfg: Config, base: tuple | None = None) -> tuple[torch.nn.Module, object, AdapterSlot]:
    """The base model (cfg.model, or `base`: an already loaded causal LM and its tokenizer, which get the
    adapter attached in place) with the fresh adapter its algorithm trains (seeded by cfg.seed), its
    tokenizer and adapter slot."""
    model, tokenizer = (load_base_model(cfg.model) if base is None
                        else prepare_base_model(*base, checkpointing=cfg.model.gradient_checkpointing))
    model = attach_adapter(model, algorithm_class(cfg.federation.algorithm).peft_config(cfg), cfg.seed)
    if cfg.model.quantization == "none":  # a quantised model is placed on the GPU as it loads
        model = model.to(resolve_device(cfg.device))
    return model, tokenizer, AdapterSlot(model)


@dataclass
class ClientWorkspace:
    """What clients need, built once: the shared model with its LoRA slot and the data of the clients
    held here, by federation-wide index (`ids[i]` is the index of `clients[i]`)."""

    cfg: Config
    model: torch.nn.Module
    tokenizer: object
    slot: AdapterSlot
    clients: list[ClientData]
    train_sets: list[list[Encoded]]
    val_sets: list[list[Encoded]]
    test_sets: list[list[Encoded]]
    initial_theta: torch.Tensor
    ids: list[int]

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id

    @cached_property
    def base_linears(self) -> list[tuple[torch.nn.Linear, dict[torch.dtype, tuple]]]:
        """The frozen base model's linear layers (not the adapter's), each with its float32 weight and bias
        and bfloat16 copies of them, made once (half the float32 weights' memory more)."""
        adapter = {id(p) for p in self.slot.params}
        return [(m, {torch.float32: (m.weight, m.bias),
                     torch.bfloat16: tuple(None if t is None else torch.nn.Parameter(t.detach().bfloat16(), False)
                                           for t in (m.weight, m.bias))})
                for m in self.model.modules()
                if isinstance(m, torch.nn.Linear) and m.weight.dtype == torch.float32
                and not m.weight.requires_grad and id(m.weight) not in adapter]

    @cached_property
    def a_mask(self) -> torch.Tensor:
        """Boolean (P,): True at the LoRA A coordinates of the flat adapter (computed once)."""
        return self.slot.layout.lora_a_mask()

    def position(self, k: int) -> int:
        """Where client k is in this workspace's lists."""
        if k not in self.ids:
            raise ValueError(f"client {k} is not held here (this workspace holds {self.ids})")
        return self.ids.index(k)


def encode_client(cfg: Config, tokenizer, client: ClientData) -> tuple[list[Encoded], list[Encoded], list[Encoded]]:
    """A client's train, validation and test examples as token ids; ConfigError if one keeps no
    response token within model.max_length."""
    def enc(part: str) -> list[Encoded]:
        encoded = [encode(e, tokenizer, cfg.model.max_length, cfg.model.prompt_format) for e in getattr(client, part)]
        empty = next((i for i, e in enumerate(encoded) if response_tokens([e]) == 0), None)
        if empty is not None:
            raise ConfigError(f"model.max_length = {cfg.model.max_length}: client {client.name}: {part} example "
                              f"{empty} keeps no response token to predict; raise model.max_length")
        return encoded

    return enc("train"), enc("val"), enc("test")


def build_workspace(cfg: Config, clients: list[ClientData] | None = None, ids: list[int] | None = None,
                    encoder=encode_client, base: tuple | None = None) -> ClientWorkspace:
    """Load the base model (or take `base`, see `build_model`), attach the adapter its algorithm trains,
    encode the clients' data (with `encoder`, same signature as `encode_client`): `clients`
    (federation-wide indices `ids`) or, by default, every client cfg.data makes (indices 0..K-1)."""
    clients = load_clients(cfg.data, cfg.seed) if clients is None else clients
    model, tokenizer, slot = build_model(cfg, base)
    train_sets, val_sets, test_sets = (list(sets) for sets in zip(*(encoder(cfg, tokenizer, c) for c in clients)))
    return ClientWorkspace(cfg=cfg, model=model, tokenizer=tokenizer, slot=slot, clients=clients, train_sets=train_sets,
                           val_sets=val_sets, test_sets=test_sets, initial_theta=slot.get(),
                           ids=list(range(len(clients))) if ids is None else ids)


def shared_workspace(built: dict[str, ClientWorkspace], cfg: Config) -> ClientWorkspace:
    """A workspace for `cfg` sharing the model and data of `built` (one per kind of adapter: LoRA,
    P-tuning), building it on first use: runs on the same clients and seed load the model once."""
    kind = adapter_key(cfg)
    if kind not in built:
        built[kind] = build_workspace(cfg)
    return dataclasses.replace(built[kind], cfg=cfg)


def compute_precision(ws: ClientWorkspace):
    """The autocast context of model.autocast for the model's device (a no-op for 'none'). Without
    autocast's cache of cast weights: it keys a trainable weight's cast by the tensor, not its values,
    so a block that changes the adapter in place (an optimiser step, AdapterSlot.set) would go on
    computing with the adapter of its first forward pass."""
    device = ws.slot.params[0].device.type
    return torch.autocast(device, dtype=torch.bfloat16, enabled=ws.cfg.model.autocast == "bfloat16",
                          cache_enabled=False)


@contextlib.contextmanager
def base_weights(ws: ClientWorkspace, dtype: torch.dtype):
    """Under bfloat16 autocast on CPU, the frozen base linear layers compute with their weights in `dtype`
    for the block: bfloat16 copies made once per workspace (`base_linears`), where autocast would cast
    them at every forward pass (5-8 % of a SmolLM2 training step, 10-18 % of an evaluation), or
    the float32 originals (inside a block with autocast off). The same numbers, as autocast casts them
    the same way. Elsewhere, and for layers already in `dtype`, nothing changes."""
    swapped = []
    if ws.cfg.model.autocast == "bfloat16" and ws.slot.params[0].device.type == "cpu":
        for module, copies in ws.base_linears:
            if module.weight is not copies[dtype][0]:
                swapped.append((module, module.weight, module.bias))
                module.weight, module.bias = copies[dtype]
    try:
        yield
    finally:
        for module, weight, bias in swapped:
            module.weight, module.bias = weight, bias


@contextlib.contextmanager
def evaluation_precision(ws: ClientWorkspace):
    """compute_precision for forward passes without gradients, with the base weights in bfloat16 under
    bfloat16 autocast on CPU (`base_weights`)."""
    with base_weights(ws, torch.bfloat16), compute_precision(ws):
        yield


@contextlib.contextmanager
def training_kernels(ws: ClientWorkspace):
    """compute_precision, with the attention kernel that train.attention picks for training and the base
    weights in bfloat16 under bfloat16 autocast on CPU (`base_weights`)."""
    choice, model = ws.cfg.train.attention, ws.model
    eager = choice == "eager" or (choice == "auto" and ws.cfg.model.autocast == "bfloat16"
                                  and ws.slot.params[0].device.type == "cpu")
    own = model.config._attn_implementation
    if eager and own != "eager":
        model.set_attn_implementation("eager")
    try:
        with base_weights(ws, torch.bfloat16), compute_precision(ws):
            yield
    finally:
        if model.config._attn_implementation != own:
            model.set_attn_implementation(own)


@dataclass
class ClientUpdate:
    """What a client returns after its round's client step."""

    client: int
    reply: Message
    num_examples: int
    train_loss: float
    """Mean training loss of the client's last pass (its own adapter's)."""
    optimizer_state: dict | None = None


class LocalTrainer:
    """Client k's local training in one round (the algorithm's `Trainer`): its batches and dropout
    are fixed by (seed, k, round)."""

    def __init__(self, ws: ClientWorkspace, k: int, round_: int, optimizer_state: dict | None, on_step=None):
        cfg = ws.cfg
        self.ws, self.data = ws, ws.train_sets[ws.position(k)]
        self.initial_theta, self.a_mask = ws.initial_theta, ws.a_mask
        lengths = [len(e.input_ids) for e in self.data] if cfg.train.group_by_length else None
        self.batches = batch_schedule(len(self.data), cfg.train.batch_size, cfg.train.local_steps, cfg.seed, k, round_,
                                      lengths)
        self.seed = client_seed(cfg.seed, k, round_)
        self.optimizer_state, self.on_step = optimizer_state, on_step
        self.mean_loss = float("nan")
        self.logged: list[float] = []

    def __call__(self, start, regularizer=None, trainable=None, persistent=True):
        ws = self.ws
        result = train_local(ws.model, ws.slot, start, self.data, self.batches, ws.cfg.train, ws.pad_id, self.seed,
                             self.optimizer_state if persistent else None, on_step=self.on_step,
                             regularizer=regularizer, trainable=trainable)
        if persistent:
            self.optimizer_state = result.optimizer_state
        self.mean_loss = result.mean_loss
        return result.theta

    @torch.no_grad()
    def loss(self, theta, step):
        ws = self.ws
        ws.slot.set(theta)
        device = ws.slot.params[0].device
        batch = collate([self.data[i] for i in self.batches[step]], ws.pad_id)
        with torch.autocast(device.type, enabled=False), base_weights(ws, torch.float32):
            return response_loss(ws.model, {k: v.to(device) for k, v in batch.items()}).item()

    def log_step(self, loss):
        self.logged.append(loss)
        self.mean_loss = sum(self.logged) / len(self.logged)
        if self.on_step is not None:
            self.on_step(loss)


def train_client(ws: ClientWorkspace, k: int, received: Message, round_: int, optimizer_state: dict | None = None,
                 on_step=None) -> ClientUpdate:
    """Client k's round: the client step of cfg.federation.algorithm on what the server sent;
    `on_step(loss)` after every optimiser step."""
    trainer = LocalTrainer(ws, k, round_, optimizer_state, on_step)
    algorithm = algorithm_class(ws.cfg.federation.algorithm)
    with training_kernels(ws):
        reply = algorithm.client_step(trainer, received, ws.cfg)
    if ws.cfg.privacy.clip > 0:  # only the clipped, noised release leaves the client (no training loss either)
        reply = privatize(received, reply, algorithm.private, ws.cfg.privacy, noise_generator(ws.cfg.seed, k, round_))
        return ClientUpdate(k, reply, len(trainer.data), float("nan"), trainer.optimizer_state)
    return ClientUpdate(k, reply, len(trainer.data), trainer.mean_loss, trainer.optimizer_state)


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
    generate_seconds: float = 0.0
    """Seconds spent generating the answers that `scores` scores."""


def evaluate_client(ws: ClientWorkspace, k: int, theta: torch.Tensor | None, generate: bool,
                    all_thetas: torch.Tensor | None = None, test: bool = True, losses: bool = True) -> ClientEvaluation:
    """Client k's evaluation of `theta`: validation loss (if it has a validation set) and, with
    `test`, test loss; with `all_thetas`, also every client's adapter on its test set; with
    `generate`, ROUGE-L and exact match on the first eval.generate_per_client test examples.
    Without `test` the test set is not read at all (tuning); without `losses`, `theta`'s validation
    and test loss are left out (the server has them); `theta` may then be None unless `generate`."""
    with evaluation_precision(ws):
        return _evaluate_client(ws, ws.position(k), theta, generate, all_thetas, test, losses)


def _evaluate_client(ws: ClientWorkspace, i: int, theta: torch.Tensor | None, generate: bool,
                     all_thetas: torch.Tensor | None, test: bool, losses: bool) -> ClientEvaluation:
    ecfg, val = ws.cfg.eval, ws.val_sets[i]
    val_loss = losses_on(ws.model, ws.slot, theta[None], val, ecfg.batch_size, ws.pad_id)[0] if val and losses else None
    if not test:
        return ClientEvaluation(None, 0, val_loss=val_loss)
    test_set = ws.test_sets[i]
    # the client's own adapter first: where it is also in `all_thetas` it is evaluated once
    rows = [theta[None]] if losses else []
    rows += [all_thetas] if all_thetas is not None else []
    scored = losses_on(ws.model, ws.slot, torch.cat(rows), test_set, ecfg.batch_size, ws.pad_id) if rows else []
    local, column = (scored[0], scored[1:]) if losses else (None, scored)
    scores, begin = None, time.perf_counter()
    if generate and ecfg.generate_per_client > 0:
        n = ecfg.generate_per_client
        ws.slot.set(theta)  # losses_on left the slot holding whichever adapter it evaluated last
        scores = generation_scores(ws.model, ws.tokenizer, ws.clients[i].test[:n], test_set[:n],
                                   ecfg.max_new_tokens, ecfg.batch_size)
    return ClientEvaluation(local, response_tokens(test_set), column if all_thetas is not None else None, scores,
                            val_loss, time.perf_counter() - begin if scores is not None else 0.0)
