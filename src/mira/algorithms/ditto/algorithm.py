"""The Ditto algorithm (described, and its settings declared, in this package's __init__)."""

from __future__ import annotations

import torch

from ..base import ADAPTER, Algorithm, adapters, proximal, write_trained_rows
from ..fedit import weighted_mean

GLOBAL = "global"
"""The message entry holding the global adapter w."""


class Ditto(Algorithm):
    name = "ditto"
    private = frozenset({ADAPTER})  # the personal adapter v_k is the client's own; only w is communicated
    training_passes = 2
    global_theta: torch.Tensor

    def __init__(self, mu: float):
        self.mu = mu

    @classmethod
    def build(cls, cfg, clients, layout, initial_theta):
        return cls(cfg.settings.mu)

    def send(self, thetas, k):
        return {ADAPTER: thetas[k], GLOBAL: self.global_theta}

    @classmethod
    def client_step(cls, train, received, cfg):
        """First w from the global adapter (a fresh optimiser), then v_k pulled towards the received w."""
        trained_global = train(received[GLOBAL], persistent=False)
        return {ADAPTER: train(received[ADAPTER], regularizer=proximal(received[GLOBAL], cfg.settings.mu)),
                GLOBAL: trained_global}

    def start(self, initial_theta: torch.Tensor) -> None:
        self.global_theta = initial_theta.clone()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"global": self.global_theta}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.global_theta = state["global"]

    def aggregate(self, thetas, replies, num_examples) -> torch.Tensor:
        self.global_theta = weighted_mean(adapters(replies, GLOBAL), num_examples)
        return write_trained_rows(thetas, replies)
