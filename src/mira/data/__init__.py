"""Federated datasets: one `ClientData` (a task with its train and test split) per client."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import DataConfig


@dataclass(frozen=True)
class Example:
    prompt: str
    response: str


@dataclass
class ClientData:
    name: str
    family: str
    train: list[Example]
    test: list[Example]


def load_clients(cfg: DataConfig, seed: int) -> list[ClientData]:
    """The clients named by `cfg.source`, each with its train/test split."""
    if cfg.source == "synthetic":
        from .synthetic import synthetic_suite
        return synthetic_suite(cfg.train_per_client, cfg.test_per_client, seed)
    raise ValueError(f"data.source: unknown source {cfg.source!r}; available: 'synthetic'")
