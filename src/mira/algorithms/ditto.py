"""Ditto (Li et al., 2021) on LoRA: the server keeps a global adapter w trained by FedAvg; each client
keeps a personal adapter v_k, trained on its own loss plus (mu/2)·‖v_k − w‖². A sampled client runs R
steps on w (returned for averaging) and R steps on v_k (its row of the state, which is evaluated)."""

from __future__ import annotations

import torch

from .base import Algorithm, LocalPlan, with_trained_rows
from .fedit import weighted_mean


class Ditto(Algorithm):
    name = "ditto"

    @staticmethod
    def search_space(trial, cfg) -> dict:
        """The learning rate and the proximal strength μ, log-uniform in [1e-3, 1]."""
        space = Algorithm.search_space(trial, cfg)
        space["federation"] = {"mu": trial.suggest_float("federation.mu", 1e-3, 1.0, log=True)}
        return space

    def __init__(self, mu: float):
        self.plan = LocalPlan(mu=mu, personal=True)

    def start(self, initial_theta: torch.Tensor) -> None:
        self.global_theta = initial_theta.clone()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"global": self.global_theta}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.global_theta = state["global"]

    def values_per_client(self, numel: int) -> int:
        return 2 * numel  # clients are stateless: the personal adapter travels beside the global one

    def aggregate(self, thetas, trained, num_examples, trained_global=None) -> torch.Tensor:
        if trained_global:
            self.global_theta = weighted_mean(trained_global, {k: num_examples[k] for k in trained_global})
        return with_trained_rows(thetas, trained)
