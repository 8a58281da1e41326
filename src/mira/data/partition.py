"""Partitioners: turn tasks into federated clients, each with a seeded train/test split."""

from __future__ import annotations

import logging
import random
from collections import Counter

import numpy as np

from . import ClientData, DataError, Example, Task

log = logging.getLogger(__name__)


def split_client(name: str, family: str, examples: list[Example], train_cap: int, test_cap: int,
                 sources: list[str] | str = "", val_cap: int = 0, train_fraction: float = 1.0) -> ClientData:
    """Hold out up to `test_cap` examples for testing, keep up to `train_cap` (and at most
    `train_fraction` of the client's examples) for training and the next up to `val_cap` for
    validation. `sources` names the task of each example (or of all), for the client's `task_counts`.

    The test part comes first and its size depends on the train and test caps only, so switching
    validation on or off never changes it; with enough data the training part does not change
    either. With fewer than train_cap + test_cap examples, train and test shrink in proportion (a
    warning says so); validation takes its share of what is left after the test part. A client
    whose train or test part would be empty is an error.
    """
    n = len(examples)
    if train_fraction < 1:
        train_cap = min(train_cap, max(1, int(train_fraction * n)))
    if n >= train_cap + test_cap:
        n_test = test_cap
    else:
        n_test = max(1, round(n * test_cap / (train_cap + test_cap)))
    pool = n - n_test
    if pool >= train_cap + val_cap:
        n_train, n_val = train_cap, val_cap
    else:
        n_val = round(pool * val_cap / (train_cap + val_cap))
        n_train = pool - n_val
    if n_train < 1 or n_test < 1:
        raise DataError(f"client {name}: {n} example(s) cannot make a non-empty train and test split "
                        f"(need at least 2; data.train_per_client={train_cap}, data.test_per_client={test_cap})")
    if n_test < test_cap or n_train < train_cap or n_val < val_cap:
        log.warning("client %s has %d examples, fewer than asked (train %d, test %d, validation %d): it gets "
                    "train %d, test %d, validation %d", name, n, train_cap, test_cap, val_cap, n_train, n_test, n_val)
    sources = [sources] * n if isinstance(sources, str) else sources
    train = slice(n_test, n_test + n_train)
    return ClientData(name, family, examples[train], examples[:n_test], dict(Counter(sources[train])),
                      val=examples[n_test + n_train:n_test + n_train + n_val])


def _shuffled(examples: list[Example], seed: int, tag: str) -> list[Example]:
    out = list(examples)
    random.Random(f"partition-{seed}-{tag}").shuffle(out)
    return out


def partition(tasks: list[Task], scheme: str, train_cap: int, test_cap: int, seed: int,
              clients_per_task: int = 1, num_clients: int = 0, alpha: float = 0.5, val_cap: int = 0,
              train_fraction: float = 1.0) -> list[ClientData]:
    """Clients from tasks.

    task: one client per task. split: `clients_per_task` clients per task, its data divided evenly.
    dirichlet: `num_clients` clients; each task's examples spread over clients with proportions drawn
    from Dirichlet(α) (small α: each client sees few tasks). iid: the pooled examples dealt evenly.
    A mixed client's family is that of the task it holds most examples of.
    """
    if scheme == "task":
        return [split_client(t.name, t.family, _shuffled(t.examples, seed, t.name), train_cap, test_cap, t.name,
                             val_cap, train_fraction)
                for t in tasks]
    if scheme == "split":
        clients = []
        for t in tasks:
            shards = np.array_split(np.arange(len(t.examples)), clients_per_task)
            shuffled = _shuffled(t.examples, seed, t.name)
            clients += [split_client(f"{t.name}#{i}", t.family, [shuffled[j] for j in shard], train_cap, test_cap,
                                     t.name, val_cap, train_fraction)
                        for i, shard in enumerate(shards)]
        return clients
    if scheme not in ("dirichlet", "iid"):
        raise ValueError(f"data.partition: unknown scheme {scheme!r}")
    if num_clients < 1:
        raise DataError(f"data.partition = '{scheme}' needs data.num_clients >= 1")
    owners: list[list[tuple[Example, str]]] = [[] for _ in range(num_clients)]
    rng = np.random.default_rng(seed)
    if scheme == "iid":
        pool = [(e, t.name) for t in tasks for e in t.examples]
        for i, j in enumerate(rng.permutation(len(pool))):
            owners[i % num_clients].append(pool[j])
    else:
        for t in tasks:
            shares = rng.dirichlet([alpha] * num_clients)
            assignment = rng.choice(num_clients, size=len(t.examples), p=shares)
            for e, owner in zip(_shuffled(t.examples, seed, t.name), assignment):
                owners[owner].append((e, t.name))
    family_of = {t.name: t.family for t in tasks}
    clients = []
    for i, held in enumerate(owners):
        if len(held) < 2:
            raise DataError(f"data.partition = '{scheme}': client{i:03d} received {len(held)} example(s); "
                            "raise data.alpha or lower data.num_clients")
        order = rng.permutation(len(held))
        held = [held[j] for j in order]
        main = Counter(name for _, name in held).most_common(1)
        family = family_of[main[0][0]] if main else "none"
        clients.append(split_client(f"client{i:03d}", family, [e for e, _ in held], train_cap, test_cap,
                                    [name for _, name in held], val_cap, train_fraction))
    return clients


def summary(clients: list[ClientData]) -> str:
    """Each client's family, train, validation and test size, and (when clients mix tasks) its training examples
    per task."""
    names = sorted({t for c in clients for t in c.task_counts})
    mixed = any(len(c.task_counts) > 1 for c in clients)
    width = max(8, *(len(c.name) for c in clients))
    head = f"{'client':<{width}} {'family':<14} {'train':>6} {'val':>5} {'test':>5}"
    if mixed:
        head += "  " + " ".join(f"{n[:14]:>14}" for n in names)
    lines = [head]
    for c in clients:
        line = f"{c.name:<{width}} {c.family[:14]:<14} {len(c.train):>6} {len(c.val):>5} {len(c.test):>5}"
        if mixed:
            line += "  " + " ".join(f"{c.task_counts.get(n, 0):>14}" for n in names)
        lines.append(line)
    return "\n".join(lines)
