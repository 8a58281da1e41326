"""FedProx (Li et al., 2020) on LoRA: FedAvg of the adapters, and each client's local loss gets the
proximal term (mu/2)·‖θ − θ_received‖², which keeps heterogeneous clients near the global adapter."""

from __future__ import annotations

from .base import ADAPTER, Algorithm
from .fedit import FedIT


class FedProx(FedIT):
    name = "fedprox"

    @staticmethod
    def search_space(trial, cfg, clients=()) -> dict:
        """The learning rate and the proximal strength μ, log-uniform in [1e-3, 1]."""
        space = Algorithm.search_space(trial, cfg)
        space["federation"] = {"mu": trial.suggest_float("federation.mu", 1e-3, 1.0, log=True)}
        return space

    @classmethod
    def client_step(cls, train, received, cfg):
        theta = received[ADAPTER]
        return {ADAPTER: train(theta, anchor=theta, mu=cfg.federation.mu)}
