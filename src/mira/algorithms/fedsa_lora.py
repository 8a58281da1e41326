"""FedSA-LoRA (Guo et al., 2025): the A matrices carry general knowledge and are shared (averaged over
the sampled clients, then given to every client); the B matrices carry client-specific knowledge and
stay local."""

from __future__ import annotations

import torch

from .base import Algorithm, with_trained_rows
from .fedit import weighted_mean


class FedSALoRA(Algorithm):
    name = "fedsa_lora"

    def __init__(self, a_mask: torch.Tensor):
        """`a_mask`: boolean (P,), True at the coordinates of LoRA A matrices in the flat adapter."""
        self.a_mask = a_mask

    def values_per_client(self, numel: int) -> int:
        return int(self.a_mask.sum())  # only A travels

    def aggregate(self, thetas, trained, num_examples, trained_global=None) -> torch.Tensor:
        out = with_trained_rows(thetas, trained)
        out[:, self.a_mask] = weighted_mean(trained, num_examples)[self.a_mask]
        return out
