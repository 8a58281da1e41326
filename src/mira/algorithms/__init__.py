"""Federated algorithms, one module each: a plain module for an algorithm without settings of its own
(fedit.py), a package for one with settings (mira/: its `__init__` declares the settings and their
search space, importing no torch; `algorithm.py` holds the algorithm). Each `Algorithm` subclass that
declares a `name` is registered in ALGORITHMS, each `AlgorithmSettings` subclass that declares an
`algorithm` in the configuration's tables. Adding an algorithm means adding its module.

This package loads no torch until an algorithm class is asked for, so that validating a configuration
(and `federation.algorithm` in it) stays light on Flower nodes.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from functools import cache

_EXPORTS = {"ADAPTER": "base", "ALGORITHMS": "base", "Algorithm": "base", "Message": "base", "FedIT": "fedit",
            "FedSALoRA": "fedsa_lora", "FFALoRA": "ffa_lora", "Local": "local", "Ditto": "ditto.algorithm",
            "FedKSeed": "fedkseed.algorithm", "FedProx": "fedprox.algorithm", "FedPTuning": "fedptuning.algorithm",
            "Mira": "mira.algorithm", "laplacian_step": "mira.algorithm"}
__all__ = sorted([*_EXPORTS, "adapter_key", "algorithm_class", "algorithm_names", "build_algorithm"])


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name == "ALGORITHMS":
        import_algorithms()
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


@cache
def builtin() -> dict[str, bool]:
    """The built-in algorithms' names (their modules' names), each with whether it is a package."""
    return {m.name: m.ispkg for m in pkgutil.iter_modules(__path__) if m.name != "base"}


def import_settings() -> None:
    """Import every built-in algorithm's settings (torch-free), registering them."""
    for name, is_package in builtin().items():
        if is_package:
            importlib.import_module(f"{__name__}.{name}")


def import_algorithms() -> None:
    """Import every built-in algorithm (torch), registering it in ALGORITHMS."""
    for name, is_package in builtin().items():
        importlib.import_module(f"{__name__}.{name}" + (".algorithm" if is_package else ""))


def algorithm_names() -> set[str]:
    """Every algorithm `federation.algorithm` may name: the built-in ones and any registered since
    (an Algorithm subclass, or the settings of one), without importing torch."""
    from ..config import SETTINGS
    base = sys.modules.get(f"{__name__}.base")
    return set(builtin()) | set(SETTINGS) | (set(base.ALGORITHMS) if base is not None else set())


def algorithm_class(name: str):
    """The registered algorithm called `name`."""
    if name in builtin():
        importlib.import_module(f"{__name__}.{name}" + (".algorithm" if builtin()[name] else ""))
    from .base import ALGORITHMS
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; registered: {', '.join(sorted(algorithm_names()))}")
    return ALGORITHMS[name]


def adapter_key(cfg) -> str:
    """What the run's algorithm trains over the base model, as a key: runs with equal keys (and model
    settings) train the same kind of adapter from the same initial state."""
    return repr(algorithm_class(cfg.federation.algorithm).peft_config(cfg))


def build_algorithm(cfg, clients, layout, initial_theta):
    """The algorithm of cfg.federation.algorithm, built for these clients and adapter layout."""
    return algorithm_class(cfg.federation.algorithm).build(cfg, clients, layout, initial_theta)
