"""Client-level differential privacy: what leaves a client is clipped and noised on the client, and an
accountant (Google's `dp-accounting`, RDP) says what each client has spent.

A client's release in a round is every float entry of its reply that is the algorithm's communication
(not its private state): the update of an entry it was also sent (returned minus sent; MIRA's, FedIT's
and FedProx's adapter, Ditto's global adapter, FedSA-LoRA's A, FFA-LoRA's B, FedPTuning's prompt), or
the entry itself (FedKSeed's scalar gradients). All of them together are scaled to L2 norm at most C
(`privacy.clip`) and Gaussian noise of standard deviation σ·C (`privacy.noise_multiplier`) is added to
every coordinate, from a generator seeded by (seed, client, round), so the simulator and Flower release
the same numbers; the server only ever sees sent + noised update.

Each release is a Gaussian mechanism of noise multiplier σ on that client's data; a client's ε at δ
(`privacy.delta`, default 1/(its training examples)) composes the rounds it actually released in (no
amplification by sampling is claimed: the server knows who it sampled). With `privacy.target_epsilon`,
a client whose next release would pass it is not asked to train again and keeps its adapter.
"""

from __future__ import annotations

import math
import random
from functools import lru_cache

import torch

from .config import PrivacyConfig


def noise_generator(seed: int, client: int, round_: int) -> torch.Generator:
    """The generator of client `client`'s noise in `round_`: a pure function of the three."""
    return torch.Generator().manual_seed(random.Random(f"dp-{seed}-{client}-{round_}").getrandbits(63))


def privatize(sent: dict[str, torch.Tensor], reply: dict[str, torch.Tensor], private: frozenset[str],
              cfg: PrivacyConfig, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The reply a client releases: its released entries' update clipped to norm cfg.clip with
    N(0, (σ·clip)²) noise added (private and integer entries unchanged)."""
    released = [key for key, value in reply.items() if key not in private and value.is_floating_point()]
    base = {key: sent[key] if key in sent and sent[key].shape == reply[key].shape else torch.zeros_like(reply[key])
            for key in released}
    updates = {key: reply[key] - base[key] for key in released}
    norm = float(torch.sqrt(sum((u.double() ** 2).sum() for u in updates.values()))) if updates else 0.0
    scale = min(1.0, cfg.clip / norm) if norm > 0 else 1.0
    out = dict(reply)
    for key in released:  # a fixed order: the noise of each entry is the same on every runner
        noise = torch.randn(updates[key].shape, generator=generator, dtype=torch.float32).to(updates[key].dtype)
        out[key] = base[key] + updates[key] * scale + noise * (cfg.noise_multiplier * cfg.clip)
    return out


@lru_cache(maxsize=4096)
def epsilon(noise_multiplier: float, releases: int, delta: float) -> float:
    """ε at δ of `releases` compositions of a Gaussian mechanism with this noise multiplier (RDP
    accountant of dp-accounting); 0 for no release, inf without noise."""
    if releases == 0:
        return 0.0
    if noise_multiplier <= 0:
        return math.inf
    import dp_accounting

    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(dp_accounting.GaussianDpEvent(noise_multiplier), releases)
    return float(accountant.get_epsilon(delta))


def client_delta(cfg: PrivacyConfig, train_examples: int) -> float:
    """privacy.delta, or 1/(the client's training examples)."""
    return cfg.delta if cfg.delta > 0 else 1.0 / max(train_examples, 1)


def releases_so_far(history: list[dict], names: list[str]) -> dict[int, int]:
    """How many rounds each client released in, from a run's records (the clients that replied)."""
    index = {name: k for k, name in enumerate(names)}
    counts = dict.fromkeys(range(len(names)), 0)
    for record in history:
        for name in record.get("train_loss", {}):
            counts[index[name]] += 1
    return counts


class Accountant:
    """Each client's releases and ε (the server's view; it knows who released in which round)."""

    def __init__(self, cfg: PrivacyConfig, train_sizes: list[int], releases: dict[int, int] | None = None):
        self.cfg = cfg
        self.deltas = [client_delta(cfg, n) for n in train_sizes]
        self.releases = releases or dict.fromkeys(range(len(train_sizes)), 0)

    @property
    def active(self) -> bool:
        return self.cfg.clip > 0

    def epsilon(self, k: int, releases: int | None = None) -> float:
        """Client k's ε at its δ after `releases` releases (default: those it made)."""
        count = self.releases[k] if releases is None else releases
        return epsilon(self.cfg.noise_multiplier, count, self.deltas[k])

    def may_release(self, k: int) -> bool:
        """Whether client k's next release keeps it within privacy.target_epsilon."""
        return not self.cfg.target_epsilon or self.epsilon(k, self.releases[k] + 1) <= self.cfg.target_epsilon

    def record(self, released: list[int]) -> None:
        for k in released:
            self.releases[k] += 1

    def report(self, names: list[str]) -> dict:
        """Every client's ε so far (at its δ), their mean and maximum, for a round's record."""
        eps = {name: self.epsilon(k) for k, name in enumerate(names)}
        return {"epsilon": eps, "mean_epsilon": sum(eps.values()) / len(eps), "max_epsilon": max(eps.values())}
