"""The FedKSeed algorithm (described, and its settings declared, in this package's __init__)."""

from __future__ import annotations

import random

import torch

from ..base import Algorithm, adapters

SCALARS = "seed_scalars"
"""Down: the K accumulated scalars c (the global model, for a client that replays it)."""
PROBABILITIES = "seed_probabilities"
"""Down (differentiated sampling): the probability of drawing each seed."""
SEEDS = "seeds"
"""Up: the index of the seed of each local step (int32)."""
GRADIENTS = "gradients"
"""Up: each local step's scalar directional derivative g."""
AMPLITUDE_CLIP = 0.5


def candidate_seeds(seed: int, k: int) -> list[int]:
    """The run's K candidate seeds (a function of its seed, known to every client)."""
    rng = random.Random(f"kseed-{seed}")
    return [rng.getrandbits(63) for _ in range(k)]


def direction(seed: int, numel: int) -> torch.Tensor:
    """z = N(0, I) of `numel` values drawn from `seed` (on CPU: the same on every machine)."""
    return torch.randn(numel, generator=torch.Generator().manual_seed(seed))


def replay(initial: torch.Tensor, scalars: torch.Tensor, seeds: list[int]) -> torch.Tensor:
    """θ_0 + Σ_j c_j·z_j over the seeds with c_j ≠ 0, in index order: the model the scalars stand for
    (the server and every client compute it so, bit for bit)."""
    theta = initial.clone()
    for j in scalars.nonzero().flatten().tolist():
        theta.add_(direction(seeds[j], theta.numel()), alpha=float(scalars[j]))
    return theta


def seed_probabilities(amplitude_sum: torch.Tensor, amplitude_count: torch.Tensor) -> torch.Tensor:
    """FedKSeed-Pro's seed probabilities: softmax of the min-max-normalised mean clipped |g| per seed."""
    amplitude = amplitude_sum / amplitude_count
    spread = amplitude.max() - amplitude.min()
    return ((amplitude - amplitude.min()) / (spread + 1e-10)).softmax(0).float()


class FedKSeed(Algorithm):
    name = "fedkseed"

    def __init__(self, seeds: list[int], initial_theta: torch.Tensor, lr: float, local_steps: int,
                 differentiated: bool = False):
        self.seeds, self.initial_theta, self.lr = seeds, initial_theta, lr
        self.local_steps, self.differentiated = local_steps, differentiated
        self.start(initial_theta)

    @classmethod
    def build(cls, cfg, clients, layout, initial_theta):
        f = cfg.settings
        return cls(candidate_seeds(cfg.seed, f.candidates), initial_theta, f.lr, cfg.train.local_steps,
                   f.sampling == "differentiated")


    def start(self, initial_theta: torch.Tensor) -> None:
        k = len(self.seeds)
        self.scalars = torch.zeros(k)
        # Each seed's history of clipped |g| starts with one 0, as in the reference implementation.
        self.amplitude_sum = torch.zeros(k, dtype=torch.float64)
        self.amplitude_count = torch.ones(k, dtype=torch.float64)

    def send(self, thetas, k):
        message = {SCALARS: self.scalars.clone()}  # the server adds to its own in place
        if self.differentiated:
            message[PROBABILITIES] = seed_probabilities(self.amplitude_sum, self.amplitude_count)
        return message

    def reply_template(self, sent):
        return {SEEDS: torch.zeros(self.local_steps, dtype=torch.int32), GRADIENTS: torch.zeros(self.local_steps)}

    def reply_problem(self, reply):
        seeds = reply[SEEDS]
        if len(seeds) and (int(seeds.min()) < 0 or int(seeds.max()) >= len(self.seeds)):
            return f"{SEEDS}: an index outside 0..{len(self.seeds) - 1}"
        return None

    @classmethod
    def client_step(cls, train, received, cfg):
        f = cfg.settings
        seeds = candidate_seeds(cfg.seed, f.candidates)
        theta = replay(train.initial_theta, received[SCALARS], seeds)
        draw = torch.Generator().manual_seed(train.seed)
        probabilities = received.get(PROBABILITIES, torch.ones(len(seeds)))
        chosen = torch.multinomial(probabilities, cfg.train.local_steps, replacement=True, generator=draw)
        gradients = []
        for step, j in enumerate(chosen.tolist()):
            z = direction(seeds[j], theta.numel())
            plus, minus = train.loss(theta + f.eps * z, step), train.loss(theta - f.eps * z, step)
            gradients.append((plus - minus) / (2 * f.eps))
            theta.add_(z, alpha=-f.lr * gradients[-1])
            train.log_step((plus + minus) / 2)
        return {SEEDS: chosen.to(torch.int32), GRADIENTS: torch.tensor(gradients)}

    def aggregate(self, thetas, replies, num_examples):
        total = sum(num_examples.values())
        if total <= 0:
            raise ValueError("FedKSeed needs at least one example among the sampled clients")
        seeds, gradients = adapters(replies, SEEDS), adapters(replies, GRADIENTS)
        for k in sorted(replies):
            used, g = seeds[k].long(), gradients[k]
            self.scalars.index_add_(0, used, g * (-self.lr * num_examples[k] / total))
            self.amplitude_sum.index_add_(0, used, g.double().clamp(-AMPLITUDE_CLIP, AMPLITUDE_CLIP).abs())
            self.amplitude_count.index_add_(0, used, torch.ones(len(used), dtype=torch.float64))
        thetas[:] = replay(self.initial_theta, self.scalars, self.seeds)
        return thetas

    def state_dict(self):
        return {"seed_scalars": self.scalars, "amplitude_sum": self.amplitude_sum,
                "amplitude_count": self.amplitude_count}

    def load_state_dict(self, state):
        self.scalars, self.amplitude_sum, self.amplitude_count = (
            state["seed_scalars"], state["amplitude_sum"], state["amplitude_count"])
