"""FedSA-LoRA (Guo et al., 2025): the A matrices carry general knowledge and are shared (averaged over
the sampled clients, then given to every client); the B matrices carry client-specific knowledge and
stay local."""

from __future__ import annotations

import torch

from .base import Algorithm, adapters, with_trained_rows
from .fedit import weighted_mean


class FedSALoRA(Algorithm):
    name = "fedsa_lora"

    def __init__(self, a_mask: torch.Tensor):
        """`a_mask`: boolean (P,), True at the coordinates of LoRA A matrices in the flat adapter."""
        self.a_mask = a_mask

    @classmethod
    def build(cls, cfg, clients, layout, initial_theta):
        return cls(layout.lora_a_mask())

    def values_per_client(self, numel: int) -> int:
        return int(self.a_mask.sum())  # only A travels

    def aggregate(self, thetas, replies, num_examples) -> torch.Tensor:
        out = with_trained_rows(thetas, replies)
        out[:, self.a_mask] = weighted_mean(adapters(replies), num_examples)[self.a_mask]
        return out
