"""FFA-LoRA (Sun et al., 2024): the A matrices stay frozen at their (shared) initialisation and only B
is trained and averaged, so the average of the B's is the exact average of the updates B·A. Only B
travels: every client knows the initial A."""

from __future__ import annotations

import torch

from ..lora import is_lora_a
from .base import Algorithm, adapters
from .fedit import weighted_mean

LORA_B = "lora_b"
"""The message entry holding the B matrices (flat, in adapter order)."""


class FFALoRA(Algorithm):
    name = "ffa_lora"

    def __init__(self, a_mask: torch.Tensor):
        """`a_mask`: boolean (P,), True at the coordinates of LoRA A matrices (they never travel)."""
        self.a_mask = a_mask

    @classmethod
    def build(cls, cfg, clients, layout, initial_theta):
        return cls(layout.lora_a_mask())

    def send(self, thetas, k):
        return {LORA_B: thetas[k][~self.a_mask]}

    @classmethod
    def client_step(cls, train, received, cfg):
        """B received over the initial A; B trained with A frozen."""
        start = train.initial_theta.clone()
        start[~train.a_mask] = received[LORA_B]
        return {LORA_B: train(start, trainable=lambda name: not is_lora_a(name))[~train.a_mask]}

    def aggregate(self, thetas, replies, num_examples) -> torch.Tensor:
        thetas[:, ~self.a_mask] = weighted_mean(adapters(replies, LORA_B), num_examples)
        return thetas
