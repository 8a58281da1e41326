"""Per-client model selection: each client keeps the adapter of the evaluation at which its
validation loss was lowest (the same rule for every algorithm)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import fmean

import torch


@dataclass
class Selection:
    thetas: torch.Tensor
    """(K × P): each client's selected adapter."""
    val_loss: torch.Tensor
    """(K,): its validation loss (inf until the client is validated)."""
    round: torch.Tensor
    """(K,): the round it comes from (-1 until the client is validated)."""

    @classmethod
    def start(cls, thetas: torch.Tensor) -> Selection:
        k = len(thetas)
        return cls(thetas.clone(), torch.full((k,), math.inf, dtype=torch.float64), torch.full((k,), -1))

    def update(self, round_: int, val_loss: dict[str, float], names: list[str], thetas: torch.Tensor) -> None:
        """Take the current adapter of every client whose validation loss is lower than its best so far
        (ties keep the earlier round)."""
        for k, name in enumerate(names):
            if name in val_loss and val_loss[name] < self.val_loss[k]:
                self.thetas[k], self.val_loss[k], self.round[k] = thetas[k], val_loss[name], round_

    @property
    def active(self) -> bool:
        """Whether any client was validated (runs with data.val_per_client = 0 select nothing)."""
        return bool((self.round >= 0).any())

    def summary(self, names: list[str]) -> dict:
        """The selected round and validation loss of every validated client, and their mean."""
        chosen = [k for k in range(len(names)) if self.round[k] >= 0]
        return {"round": {names[k]: int(self.round[k]) for k in chosen},
                "val_loss": {names[k]: float(self.val_loss[k]) for k in chosen},
                "mean_val_loss": fmean(float(self.val_loss[k]) for k in chosen)}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"thetas": self.thetas, "val_loss": self.val_loss, "round": self.round}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], thetas: torch.Tensor) -> Selection:
        """The saved selection; a checkpoint older than selection starts one afresh from `thetas`."""
        if not state:
            return cls.start(thetas)
        return cls(state["thetas"].clone(), state["val_loss"].clone(), state["round"].clone())
