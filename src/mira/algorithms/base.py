"""The interface every federated algorithm implements: what the server sends a sampled client, what
that client trains and sends back, and the server rule that turns the replies into the new state."""

from __future__ import annotations

import math
import statistics
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, Protocol

import torch

if TYPE_CHECKING:
    from ..config import Config
    from ..data import ClientData
    from ..lora import AdapterLayout

ADAPTER = "adapter"
"""The message entry holding a client's own whole adapter."""

Message = dict[str, torch.Tensor]
"""What travels one way between the server and one client: named flat tensors."""

Regularizer = Callable[[torch.Tensor], torch.Tensor]
"""A term added to a client's local loss: a differentiable function of its flat adapter θ."""


def proximal(anchor: torch.Tensor, mu: float) -> Regularizer:
    """(mu/2)·‖θ − anchor‖²: keeps local training near `anchor` (FedProx, Ditto)."""
    return lambda theta: mu / 2 * (theta - anchor.to(theta.device)).square().sum()


ALGORITHMS: dict[str, type[Algorithm]] = {}
"""Every algorithm by its `federation.algorithm` name: each class that declares a `name` joins it."""


class Trainer(Protocol):
    """One client's local training in one round, bound to its data, batches and dropout seed."""

    initial_theta: torch.Tensor
    """The adapter every client starts from (a function of the run's seed, known to every client)."""
    a_mask: torch.Tensor
    """Boolean (P,): True at the coordinates of LoRA A matrices in the flat adapter."""
    seed: int
    """This client's seed for this round (a function of the run's seed, the client and the round)."""

    def __call__(self, start: torch.Tensor, regularizer: Regularizer | None = None,
                 trainable: Callable[[str], bool] | None = None, persistent: bool = True) -> torch.Tensor:
        """R optimiser steps from `start`; returns the trained adapter. The hooks of a local objective:
        `regularizer(θ)` (θ the flat adapter, differentiable) is added to every step's loss; only the
        adapter parameters whose names `trainable` accepts are trained (default: all); `persistent`
        lets this pass use (and keep) the client's optimiser state if the run keeps one."""

    def loss(self, theta: torch.Tensor, step: int) -> float:
        """The training loss of adapter `theta` on the batch of local step `step` (0 ≤ step < R),
        forward only, without dropout, in float32 whatever model.autocast says (zeroth-order client
        steps: at ε = 5e-4 a two-point difference in bfloat16 is rounding noise on SmolLM2;
        benchmarks/zeroth_order.py)."""

    def log_step(self, loss: float) -> None:
        """Record one local step's loss (progress bars, the round's mean training loss) where the
        client step does not go through `__call__`."""


class Algorithm(ABC):
    """A federated algorithm. The federated state is a (K × P) tensor: row k is the adapter client k
    trains from next time it is sampled (and is evaluated with). Subclasses that set `name` are
    registered in ALGORITHMS; `build` makes one from the run's configuration."""

    name: ClassVar[str]
    private: ClassVar[frozenset[str]] = frozenset()
    """Message entries that are the client's own state, not the algorithm's communication (Local's
    and FedSA-LoRA's adapter, Ditto's personal one). A client that kept state would not send them;
    mira's clients are stateless (Flower starts a process per message, and a resumed run is a new
    Flower run), so the server keeps them for their clients and they travel beside the algorithm's
    entries, counted apart (bytes_state), not in bytes_up/bytes_down."""
    training_passes: ClassVar[int] = 1
    """Passes of R local steps a sampled client makes per round (progress bars)."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            if cls.name in ALGORITHMS:
                raise ValueError(f"two algorithms are named {cls.name!r}: {ALGORITHMS[cls.name]} and {cls}")
            ALGORITHMS[cls.name] = cls

    @classmethod
    def peft_config(cls, cfg: Config):
        """The PEFT adapter the clients train over the frozen model (LoRA as cfg.model says)."""
        from ..model import lora_config
        return lora_config(cfg.model)

    @classmethod
    def build(cls, cfg: Config, clients: list[ClientData], layout: AdapterLayout,
              initial_theta: torch.Tensor) -> Algorithm:
        """The algorithm with the settings of `cfg` for these clients (and adapter layout)."""
        return cls()


    def send(self, thetas: torch.Tensor, k: int) -> Message:
        """What the server sends sampled client k: its own adapter."""
        return {ADAPTER: thetas[k]}

    def reply_template(self, sent: Message) -> Message:
        """Tensors shaped like the reply a client must send for `sent` (screening rejects any other):
        by default the same entries as it was sent."""
        return sent

    def reply_problem(self, reply: Message) -> str | None:
        """What makes a well-shaped, finite reply unusable by this rule (screening then rejects it),
        if anything."""
        return None

    @classmethod
    def client_step(cls, train: Trainer, received: Message, cfg: Config) -> Message:
        """What a sampled client does with what it received, and what it sends back: R steps on its
        own loss from the adapter received. Runs on the client, knowing only the run's `cfg`."""
        return {ADAPTER: train(received[ADAPTER])}

    @abstractmethod
    def aggregate(self, thetas: torch.Tensor, replies: dict[int, Message], num_examples: dict[int, int]
                  ) -> torch.Tensor:
        """Return the new (K × P) state after the sampled clients sent `replies` (screened, by
        client), having trained on `num_examples` examples each.

        `thetas` holds the state before the round; the rule may write the new state into it and return
        it (at K = 1000 a copy of the state is gigabytes), so the caller keeps no other use of it.
        """

    def start(self, initial_theta: torch.Tensor) -> None:
        """Set up server state for a fresh run whose clients all start from `initial_theta`."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Server state a checkpoint must hold to resume exactly (beyond the K × P rows)."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what `state_dict` returned."""

    def report(self) -> dict:
        """Extra metrics for the round's record (e.g. the learned graph)."""
        return {}


def adapters(replies: dict[int, Message], entry: str = ADAPTER) -> dict[int, torch.Tensor]:
    """The trained adapter (or another `entry`) in each client's reply."""
    return {k: reply[entry] for k, reply in replies.items()}


def write_trained_rows(thetas: torch.Tensor, replies: dict[int, Message]) -> torch.Tensor:
    """`thetas`, its rows of the clients that replied overwritten with their trained adapters."""
    for k, theta in adapters(replies).items():
        thetas[k] = theta
    return thetas


NORM_HISTORY = 64
"""How many of the latest accepted update norms (of each entry) `clip_to_median` compares against."""


def screen_replies(sent: dict[int, Message], replies: dict[int, Message], max_update_norm: float = 0.0,
                   clip_to_median: float = 0.0, templates: dict[int, Message] | None = None,
                   check=None, history: dict[str, list[float]] | None = None) -> tuple[dict[int, Message], dict[int, str]]:
    """Keep the replies that are safe to aggregate; say why each other one was rejected.

    A reply must hold every tensor of its template (by default what its client was sent), of the same
    shape and dtype, and finite, and `check(reply)` (if given) must find no problem in it; otherwise
    it is rejected (its client keeps its last good adapter and its neighbours never see the bad one).
    Each accepted update of an entry that was also sent (returned minus sent tensor) longer than
    `max_update_norm` (if > 0), or than `clip_to_median` times a reference norm (if > 0), is scaled
    down to that length. The reference is the median of this round's update norms together with the
    latest NORM_HISTORY accepted (after scaling) norms of earlier rounds, kept in `history` (by entry;
    updated here); with fewer than three norms to compare, the smallest of them, so that one of two
    replies, or the first one, cannot set its own bound.
    """
    templates = templates or sent
    history = {} if history is None else history
    accepted, rejected = {}, {}
    for k, reply in replies.items():
        problems = [f"{key}: {problem}" for key, tensor in templates[k].items()
                    if (problem := _problem(reply.get(key), tensor))]
        if not problems and check is not None and (problem := check(reply)):
            problems.append(problem)
        if problems:
            rejected[k] = "; ".join(problems)
        else:
            accepted[k] = dict(reply)
    for key in sorted({key for k in accepted for key in sent[k] if key in templates[k]}):
        norms = {k: float((reply[key] - sent[k][key]).norm()) for k, reply in accepted.items()
                 if key in sent[k] and key in templates[k]}
        bounds = [max_update_norm] if max_update_norm > 0 else []
        if clip_to_median > 0 and norms:
            pool = history.get(key, [])[-NORM_HISTORY:] + list(norms.values())
            bounds.append(clip_to_median * (statistics.median(pool) if len(pool) >= 3 else min(pool)))
        bound = min(bounds, default=math.inf)
        for k, norm in norms.items():
            if norm > bound:
                accepted[k][key] = sent[k][key] + (accepted[k][key] - sent[k][key]) * (bound / norm)
        if clip_to_median > 0:
            history[key] = (history.get(key, []) + [min(norm, bound) for norm in norms.values()])[-NORM_HISTORY:]
    return accepted, rejected


def _problem(returned: torch.Tensor | None, sent: torch.Tensor) -> str | None:
    if returned is None:
        return "missing"
    if returned.shape != sent.shape:
        return f"shape {tuple(returned.shape)}, expected {tuple(sent.shape)}"
    if returned.dtype != sent.dtype:
        return f"dtype {returned.dtype}, expected {sent.dtype}"
    if not torch.isfinite(returned).all():
        return f"{int((~torch.isfinite(returned)).sum())} non-finite values"
    return None
