"""Federated algorithms, one module each: every module in this package is imported, and each
`Algorithm` subclass that declares a `name` is registered in ALGORITHMS (config choices, `--help`,
`mira compare` and the Flower app read it). Adding an algorithm means adding its module."""

from __future__ import annotations

import importlib
import pkgutil

import torch

from .base import ADAPTER, ALGORITHMS, Algorithm, Message
from .ditto import Ditto
from .fedit import FedIT
from .fedkseed import FedKSeed
from .fedprox import FedProx
from .fedptuning import FedPTuning
from .fedsa_lora import FedSALoRA
from .ffa_lora import FFALoRA
from .local import Local
from .mira import Mira, laplacian_step

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["ADAPTER", "ALGORITHMS", "Algorithm", "Ditto", "FedIT", "FedKSeed", "FedPTuning", "FedProx", "FedSALoRA",
           "FFALoRA", "Local", "Message", "Mira", "adapter_kind", "algorithm_class", "build_algorithm", "laplacian_step"]


def algorithm_class(name: str) -> type[Algorithm]:
    """The registered algorithm called `name`."""
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; registered: {', '.join(sorted(ALGORITHMS))}")
    return ALGORITHMS[name]


def adapter_kind(cfg) -> str:
    """What the run's algorithm trains: 'lora' or 'p_tuning' (Algorithm.adapter)."""
    return algorithm_class(cfg.federation.algorithm).adapter


def build_algorithm(cfg, clients, layout, initial_theta: torch.Tensor) -> Algorithm:
    """The algorithm of cfg.federation.algorithm, built for these clients and adapter layout."""
    return algorithm_class(cfg.federation.algorithm).build(cfg, clients, layout, initial_theta)
