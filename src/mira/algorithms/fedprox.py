"""FedProx (Li et al., 2020) on LoRA: FedAvg of the adapters, and each client's local loss gets the
proximal term (mu/2)·‖θ − θ_received‖², which keeps heterogeneous clients near the global adapter."""

from __future__ import annotations

from .base import LocalPlan
from .fedit import FedIT


class FedProx(FedIT):
    name = "fedprox"

    def __init__(self, mu: float):
        self.plan = LocalPlan(mu=mu)
