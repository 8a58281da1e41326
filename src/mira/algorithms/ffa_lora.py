"""FFA-LoRA (Sun et al., 2024): the A matrices stay frozen at their (shared) initialisation and only B
is trained and averaged, so the average of the B's is the exact average of the updates B·A."""

from __future__ import annotations

import torch

from .base import ADAPTER
from .fedit import FedIT


class FFALoRA(FedIT):
    name = "ffa_lora"

    def __init__(self, a_mask: torch.Tensor):
        """`a_mask`: boolean (P,), True at the coordinates of LoRA A matrices (they never travel)."""
        self.a_mask = a_mask

    @classmethod
    def build(cls, cfg, clients, layout, initial_theta):
        return cls(layout.lora_a_mask())

    @classmethod
    def client_step(cls, train, received, cfg):
        return {ADAPTER: train(received[ADAPTER], freeze_a=True)}

    def values_per_client(self, numel: int) -> int:
        return int((~self.a_mask).sum())  # only B travels
