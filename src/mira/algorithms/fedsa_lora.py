"""FedSA-LoRA (Guo et al., 2025): the A matrices carry general knowledge and are shared (averaged over
the sampled clients, then given to every client); the B matrices carry client-specific knowledge and
stay local. Only A travels; the client's own adapter (its B) is its private state."""

from __future__ import annotations

import torch

from .base import ADAPTER, Algorithm, adapters, write_trained_rows
from .fedit import weighted_mean

LORA_A = "lora_a"
"""The message entry holding the A matrices (flat, in adapter order)."""


class FedSALoRA(Algorithm):
    name = "fedsa_lora"
    private = frozenset({ADAPTER})

    def __init__(self, a_mask: torch.Tensor):
        """`a_mask`: boolean (P,), True at the coordinates of LoRA A matrices in the flat adapter."""
        self.a_mask = a_mask

    @classmethod
    def build(cls, cfg, clients, layout, initial_theta):
        return cls(layout.lora_a_mask())

    def send(self, thetas, k):
        return {ADAPTER: thetas[k], LORA_A: thetas[k][self.a_mask]}

    @classmethod
    def client_step(cls, train, received, cfg):
        """Its own adapter with the shared A received; returns the trained A (and its own adapter)."""
        start = received[ADAPTER].clone()
        start[train.a_mask] = received[LORA_A]
        trained = train(start)
        return {ADAPTER: trained, LORA_A: trained[train.a_mask]}

    def aggregate(self, thetas, replies, num_examples) -> torch.Tensor:
        thetas = write_trained_rows(thetas, replies)
        thetas[:, self.a_mask] = weighted_mean(adapters(replies, LORA_A), num_examples)
        return thetas
