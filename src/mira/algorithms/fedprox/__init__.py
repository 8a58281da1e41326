"""FedProx (Li et al., 2020) on LoRA: FedAvg of the adapters, and each client's local loss gets the
proximal term (mu/2)·‖θ − θ_received‖², which keeps heterogeneous clients near the global adapter."""

from __future__ import annotations

from pydantic import Field

from ...config import AlgorithmSettings


class FedProxSettings(AlgorithmSettings):
    """FedProx's settings (the `[fedprox]` table)."""

    algorithm = "fedprox"
    mu: float = Field(0.01, ge=0)
    """μ: strength of the proximal term (mu/2)·‖θ − θ_received‖² in every client's local loss."""

    @staticmethod
    def search_space(trial, cfg, clients=()) -> dict:
        """The learning rate and μ, log-uniform in [1e-3, 1]."""
        return AlgorithmSettings.search_space(trial, cfg) | {
            "fedprox": {"mu": trial.suggest_float("fedprox.mu", 1e-3, 1.0, log=True)}}
