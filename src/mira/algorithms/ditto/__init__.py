"""Ditto (Li et al., 2021) on LoRA: the server keeps a global adapter w trained by FedAvg; each client
keeps a personal adapter v_k, trained on its own loss plus (mu/2)·‖v_k − w‖². A sampled client gets
both, runs R steps on w (returned for averaging) and R steps on v_k (its row of the state, which is
evaluated)."""

from __future__ import annotations

from pydantic import Field

from ...config import AlgorithmSettings


class DittoSettings(AlgorithmSettings):
    """Ditto's settings (the `[ditto]` table)."""

    algorithm = "ditto"
    mu: float = Field(0.01, ge=0)
    """Ditto's λ: strength of (mu/2)·‖v_k − w‖², which pulls each personal adapter v_k to the global w."""

    @staticmethod
    def search_space(trial, cfg, clients=()) -> dict:
        """The learning rate and mu, log-uniform in [1e-3, 1]."""
        return AlgorithmSettings.search_space(trial, cfg) | {
            "ditto": {"mu": trial.suggest_float("ditto.mu", 1e-3, 1.0, log=True)}}
