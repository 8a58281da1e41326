"""Local training: every client keeps its own adapter, nothing is shared."""

from __future__ import annotations

import torch

from .base import ADAPTER, Algorithm, write_trained_rows


class Local(Algorithm):
    name = "local"
    private = frozenset({ADAPTER})  # nothing is communicated

    def aggregate(self, thetas, replies, num_examples) -> torch.Tensor:
        return write_trained_rows(thetas, replies)
