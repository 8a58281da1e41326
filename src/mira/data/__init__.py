"""Federated datasets: one `ClientData` (a task with its train and test split) per client."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..config import DataConfig
from ..errors import MiraError


@dataclass(frozen=True)
class Example:
    prompt: str
    response: str
    references: tuple[str, ...] = ()
    """Every acceptable answer, for generation metrics (the response is the training target)."""


class DataError(MiraError):
    """Input data is malformed; the message names file, line or instance, field and expectation."""


@dataclass
class Task:
    name: str
    family: str
    examples: list[Example]


@dataclass
class ClientData:
    name: str
    family: str
    train: list[Example]
    test: list[Example]
    task_counts: dict[str, int] = field(default_factory=dict)
    """Training examples per source task."""
    val: list[Example] = field(default_factory=list)
    """Validation examples (model selection and tuning), disjoint from train and test."""


SYNTHETIC_LIMIT = 100_000
"""Examples a synthetic task may be asked for (each is generated and held in memory)."""


def load_tasks(cfg: DataConfig, seed: int) -> list[Task]:
    """The tasks named by `cfg.source` (before partitioning), filtered to `cfg.tasks` if given."""
    from .loaders import DOLLY_HUB_ID, load_dolly, load_natural_instructions, load_records

    if cfg.source == "synthetic":
        from .synthetic import TASKS, synthetic_tasks
        # enough examples per task for every partition scheme to fill each client's caps
        per_task = (cfg.train_per_client + cfg.test_per_client + cfg.val_per_client) * max(1, cfg.clients_per_task,
                                                                      -(-cfg.num_clients // len(TASKS)))
        if per_task > SYNTHETIC_LIMIT:
            raise DataError(f"data.train_per_client + data.val_per_client + data.test_per_client = "
                            f"{cfg.train_per_client + cfg.val_per_client + cfg.test_per_client} (times the clients "
                            f"per task) asks the synthetic suite for {per_task} examples a task; at most "
                            f"{SYNTHETIC_LIMIT} are generated")
        tasks = synthetic_tasks(per_task, seed)
    elif cfg.source == "natural_instructions":
        tasks = load_natural_instructions(cfg.path, cfg.num_positive_examples, _read_families(cfg.families),
                                          cfg.ni_family)
    elif cfg.source == "dolly":
        tasks = load_dolly(cfg.path or DOLLY_HUB_ID)
    else:
        tasks = load_records(cfg.path, cfg.prompt_field, cfg.response_field, cfg.task_field, cfg.context_field)
    if cfg.tasks:
        available = {t.name for t in tasks}
        unknown = [t for t in cfg.tasks if t not in available]
        if unknown:
            raise DataError(f"data.tasks: unknown task(s) {', '.join(unknown)}; available: "
                            f"{', '.join(sorted(available))}")
        tasks = [t for t in tasks if t.name in set(cfg.tasks)]
    return tasks


def _read_families(path: str) -> dict[str, str] | None:
    """A JSON object mapping task name to family name, or None when no file is given."""
    if not path:
        return None
    try:
        mapping = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"data.families: cannot read {path} ({exc})") from None
    if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
        raise DataError(f"data.families: {path} must be a JSON object mapping task name to family name")
    return mapping


def load_clients(cfg: DataConfig, seed: int) -> list[ClientData]:
    """The federated clients: tasks from `cfg.source`, partitioned by `cfg.partition`, each split
    into train, validation and test with `seed`."""
    from .partition import partition

    return partition(load_tasks(cfg, seed), cfg.partition, cfg.train_per_client, cfg.test_per_client, seed,
                     cfg.clients_per_task, cfg.num_clients, cfg.alpha, cfg.val_per_client, cfg.train_fraction)
