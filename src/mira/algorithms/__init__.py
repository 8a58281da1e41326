"""Federated algorithms, one module each, sharing the `Algorithm` interface."""

from __future__ import annotations

import torch

from ..config import FederationConfig
from ..graph import GraphEstimator
from .base import Algorithm, LocalPlan
from .ditto import Ditto
from .fedit import FedIT
from .fedprox import FedProx
from .fedsa_lora import FedSALoRA
from .ffa_lora import FFALoRA
from .local import Local
from .mira import Mira, laplacian_step

ALGORITHMS: dict[str, type[Algorithm]] = {cls.name: cls for cls in (Mira, FedIT, Local, FedProx, Ditto, FedSALoRA,
                                                                   FFALoRA)}
"""Every algorithm by its `federation.algorithm` name."""

__all__ = ["ALGORITHMS", "Algorithm", "Ditto", "FedIT", "FedProx", "FedSALoRA", "FFALoRA", "Local", "LocalPlan", "Mira",
           "laplacian_step", "build_algorithm"]


def build_algorithm(cfg: FederationConfig, adjacency: torch.Tensor, a_mask: torch.Tensor,
                    estimator: GraphEstimator | None = None) -> Algorithm:
    """The algorithm named by `cfg.algorithm`: MIRA with step η·λ over `adjacency` (or a learned
    graph), the proximal ones with cfg.mu; `a_mask` marks the LoRA A coordinates (FedSA-LoRA)."""
    if cfg.algorithm == "mira":
        return Mira(adjacency, step=cfg.eta * cfg.lam, neighbours=cfg.neighbours, estimator=estimator)
    if cfg.algorithm == "fedit":
        return FedIT()
    if cfg.algorithm == "local":
        return Local()
    if cfg.algorithm == "ffa_lora":
        return FFALoRA(a_mask)
    if cfg.algorithm == "fedprox":
        return FedProx(cfg.mu)
    if cfg.algorithm == "ditto":
        return Ditto(cfg.mu)
    if cfg.algorithm == "fedsa_lora":
        return FedSALoRA(a_mask)
    raise ValueError(f"unknown algorithm {cfg.algorithm!r}")
