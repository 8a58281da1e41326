"""The FedProx algorithm (described, and its settings declared, in this package's __init__)."""

from __future__ import annotations

from ..base import ADAPTER, proximal
from ..fedit import FedIT


class FedProx(FedIT):
    name = "fedprox"

    @classmethod
    def client_step(cls, train, received, cfg):
        theta = received[ADAPTER]
        return {ADAPTER: train(theta, regularizer=proximal(theta, cfg.settings.mu))}
