"""Federated algorithms, one module each, sharing the `Algorithm` interface."""

from __future__ import annotations

import torch

from ..config import FederationConfig
from .base import Algorithm
from .fedit import FedIT
from .local import Local
from .mira import Mira, laplacian_step

__all__ = ["Algorithm", "FedIT", "Local", "Mira", "laplacian_step", "build_algorithm"]


def build_algorithm(cfg: FederationConfig, adjacency: torch.Tensor) -> Algorithm:
    """The algorithm named by `cfg.algorithm`, with MIRA's step η·λ over `adjacency`."""
    if cfg.algorithm == "mira":
        return Mira(adjacency, step=cfg.eta * cfg.lam, neighbours=cfg.neighbours)
    if cfg.algorithm == "fedit":
        return FedIT()
    if cfg.algorithm == "local":
        return Local()
    raise ValueError(f"unknown algorithm {cfg.algorithm!r}")
