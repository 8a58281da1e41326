"""FedKSeed (Qin et al., ICML 2024): zeroth-order federated tuning with K candidate seeds.

The run fixes K candidate seeds; seed j stands for the Gaussian direction z_j = N(0, I) drawn from it.
The one global model is θ_0 + Σ_j c_j·z_j, and the server holds only the K accumulated scalars c_j.
A sampled client is sent c, replays it to get the global model, then takes R steps: draw a seed j,
estimate the directional derivative g = (f(θ + εz_j) − f(θ − εz_j)) / 2ε from two forward passes on
the step's batch, set θ ← θ − lr·g·z_j. It sends back only its R (seed index, g) pairs. The server
adds −lr·Σ w_k·g to each used seed's scalar (w_k the clients' shares of the round's examples), which is
FedAvg of the clients' models, and replays the scalars to the new global model that every client
evaluates. With 'differentiated' sampling (FedKSeed-Pro) the server also sends the seeds'
probabilities: a softmax of each seed's min-max-normalised mean |g| over the history (g clipped to
±0.5, as in the reference implementation).

Deviation from the paper: the perturbed and trained parameters are the LoRA adapter's (initialised as
every other LoRA algorithm's), not the full model's. A stateless client replaying K = 4096
directions over SmolLM2-135M's 135M weights would draw 4096 × 135M Gaussians per message (51 minutes
on one thread of an AMD EPYC; benchmarks/zeroth_order.py); over the LoRA adapter, 0.1 minutes. The seed scalars and the messages are
exactly the paper's.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ...config import AlgorithmSettings


class FedKSeedSettings(AlgorithmSettings):
    """FedKSeed's settings (the `[fedkseed]` table)."""

    algorithm = "fedkseed"
    candidates: int = Field(4096, gt=0)
    """K: number of candidate seeds (the paper's default 4096; its official examples use 1024)."""
    eps: float = Field(5e-4, gt=0)
    """Perturbation scale ε of the two-point zeroth-order estimate (the paper's 5e-4)."""
    lr: float = Field(3e-7, gt=0)
    """Learning rate of its zeroth-order SGD steps (the paper's 3e-7, for full-parameter tuning;
    train.lr is the gradient-based algorithms' and is not used)."""
    sampling: Literal["uniform", "differentiated"] = "uniform"
    """How a client draws a step's seed: 'uniform', or 'differentiated' (FedKSeed-Pro: seeds whose
    past scalar gradients were larger are drawn more often)."""

    @staticmethod
    def search_space(trial, cfg, clients=()) -> dict:
        """Its zeroth-order learning rate, log-uniform in [1e-7, 1e-2]: from about the paper's 3e-7
        (full-parameter steps) to MeZO's LoRA rates (1e-4) and beyond; train.lr is not used."""
        return {"fedkseed": {"lr": trial.suggest_float("fedkseed.lr", 1e-7, 1e-2, log=True)}}

    def check(self, cfg) -> None:
        if cfg.flower.precision != "float32":
            raise ValueError("flower.precision: FedKSeed sends seed scalars, not adapters; 'bfloat16' would round "
                             "the scalars every client replays its model from; use 'float32'")
