"""FedIT (Zhang et al., 2024): FedAvg of the LoRA A and B matrices; every client gets the average."""

from __future__ import annotations

import torch

from .base import Algorithm, adapters


def weighted_mean(trained: dict[int, torch.Tensor], num_examples: dict[int, int]) -> torch.Tensor:
    """Sample-size weighted mean of the returned adapters."""
    clients = sorted(trained)
    weights = torch.tensor([float(num_examples[k]) for k in clients], dtype=torch.float64)
    if weights.sum() <= 0:
        raise ValueError("FedIT needs at least one example among the sampled clients")
    stacked = torch.stack([trained[k] for k in clients])
    return (weights @ stacked.double() / weights.sum()).to(stacked.dtype)


class FedIT(Algorithm):
    name = "fedit"

    def aggregate(self, thetas, replies, num_examples) -> torch.Tensor:
        thetas[:] = weighted_mean(adapters(replies), num_examples)
        return thetas
