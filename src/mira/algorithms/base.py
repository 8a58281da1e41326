"""The interface every federated algorithm implements: a server rule over per-client adapters."""

from __future__ import annotations

import math
import statistics
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LocalPlan:
    """How a sampled client trains, beyond R steps on its own loss."""

    mu: float = 0.0
    """Proximal pull (mu/2)·‖θ − anchor‖²; the anchor is the adapter received (FedProx) or, with
    `personal`, the global adapter (Ditto)."""
    freeze_a: bool = False
    """Leave the LoRA A matrices untrained (FFA-LoRA)."""
    personal: bool = False
    """Ditto: the client also trains the server's global adapter and returns it."""


class Algorithm(ABC):
    """A server rule. The federated state is a (K × P) tensor: row k is the adapter client k trains
    from next time it is sampled (and is evaluated with)."""

    name: str
    communicates = True
    """Whether clients exchange adapters with the server (False: nothing is sent, e.g. Local)."""
    plan = LocalPlan()
    global_theta: torch.Tensor | None = None
    """A server-held adapter besides the per-client rows (Ditto's global model), sent with each task."""

    @staticmethod
    def search_space(trial, cfg) -> dict:
        """Hyper-parameters `mira tune` searches for this algorithm, as nested config overrides drawn
        from an Optuna `trial`: the local learning rate, log-uniform within 10x of cfg.train.lr."""
        return {"train": {"lr": trial.suggest_float("train.lr", cfg.train.lr / 10, cfg.train.lr * 10, log=True)}}

    @abstractmethod
    def aggregate(self, thetas: torch.Tensor, trained: dict[int, torch.Tensor],
                  num_examples: dict[int, int], trained_global: dict[int, torch.Tensor] | None = None
                  ) -> torch.Tensor:
        """Return the new (K × P) state after the sampled clients returned `trained` adapters (and,
        under a personal plan, their trained copies of the global adapter).

        `thetas` holds the state before the round and is not modified.
        """

    def values_per_client(self, numel: int) -> int:
        """Adapter values a sampled client receives, and sends, per round (`numel` per adapter)."""
        return numel if self.communicates else 0

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


def with_trained_rows(thetas: torch.Tensor, trained: dict[int, torch.Tensor]) -> torch.Tensor:
    """A copy of `thetas` with the rows of the clients that trained replaced by their new adapters."""
    out = thetas.clone()
    for k, theta in trained.items():
        out[k] = theta
    return out


def screen_updates(thetas: torch.Tensor, trained: dict[int, torch.Tensor], max_update_norm: float = 0.0,
                   clip_to_median: float = 0.0) -> tuple[dict[int, torch.Tensor], dict[int, str]]:
    """Keep the returned adapters that are safe to aggregate; say why each other one was rejected.

    An adapter of the wrong shape or holding NaN/Inf is rejected: its client keeps its last good
    adapter and its neighbours never see the bad one. An accepted update θ_new − θ_old longer than
    `max_update_norm` (if > 0), or than `clip_to_median` times the median norm of this round's
    accepted updates (if > 0), is scaled down to that length.
    """
    accepted, rejected = {}, {}
    for k, theta in trained.items():
        if theta.shape != thetas[k].shape:
            rejected[k] = f"shape {tuple(theta.shape)}, expected {tuple(thetas[k].shape)}"
        elif not torch.isfinite(theta).all():
            rejected[k] = f"{int((~torch.isfinite(theta)).sum())} non-finite values"
        else:
            accepted[k] = theta
    norms = {k: float((theta - thetas[k]).norm()) for k, theta in accepted.items()}
    bounds = [max_update_norm] if max_update_norm > 0 else []
    if clip_to_median > 0 and norms:
        bounds.append(clip_to_median * statistics.median(norms.values()))
    for k, norm in norms.items():
        bound = min(bounds, default=math.inf)
        if norm > bound:
            accepted[k] = thetas[k] + (accepted[k] - thetas[k]) * (bound / norm)
    return accepted, rejected
