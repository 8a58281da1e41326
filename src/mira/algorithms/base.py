"""The interface every federated algorithm implements: a server rule over per-client adapters."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class Algorithm(ABC):
    """A server rule. The federated state is a (K × P) tensor: row k is the adapter client k trains
    from next time it is sampled (and is evaluated with)."""

    name: str
    communicates = True
    """Whether clients exchange adapters with the server (False: nothing is sent, e.g. Local)."""

    @abstractmethod
    def aggregate(self, thetas: torch.Tensor, trained: dict[int, torch.Tensor],
                  num_examples: dict[int, int]) -> torch.Tensor:
        """Return the new (K × P) state after the sampled clients returned `trained` adapters.

        `thetas` holds the state before the round and is not modified.
        """


def with_trained_rows(thetas: torch.Tensor, trained: dict[int, torch.Tensor]) -> torch.Tensor:
    """A copy of `thetas` with the rows of the clients that trained replaced by their new adapters."""
    out = thetas.clone()
    for k, theta in trained.items():
        out[k] = theta
    return out
