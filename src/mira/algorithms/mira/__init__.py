"""MIRA (Elbakary et al., 2025): personalised LoRA adapters pulled together along a task graph.

Server step for each sampled client k after its R local steps:
    θ_k ← θ_k − ηλ Σ_l a_kl (θ_k − θ_l),
i.e. Θ ← Θ − ηλ·L·Θ on the sampled rows, with L the Laplacian of the task graph. The rule is linear
and acts coordinate-wise, so regularising the A and B matrices as separate tensors and acting on them
stacked as one vector give the same result.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ...config import AlgorithmSettings, Section


class GraphSettings(Section):
    """MIRA's task graph: the weights a_kl of the regulariser (the `[mira.graph]` table)."""

    kind: Literal["file", "ground_truth", "learned", "random", "uniform"] = "uniform"
    """'uniform' (complete graph), 'ground_truth' (the data's task families), 'random' (the paper's
    random weights a_kl: see density, weight_min, weight_max), 'file', or 'learned' (estimated from
    the clients' adapter updates during training; starts from mira.graph.path if given, else uniform)."""
    density: float = Field(0.5, ge=0, le=1)
    """random: probability that a pair of clients is linked."""
    weight_min: float = 0.0
    """random: smallest edge weight (weights are uniform in [weight_min, weight_max])."""
    weight_max: float = 1.0
    """random: largest edge weight."""
    path: str = ""
    """CSV or JSON K×K matrix, for kind = 'file' (or the prior of kind = 'learned')."""
    knn: int = Field(2, ge=0)
    """learned: keep each client's knn most similar clients (0 = keep similarities >= threshold)."""
    threshold: float = Field(0.5, ge=0)
    """learned, knn = 0: smallest cosine similarity of two clients' updates that makes an edge."""
    update_every: int = Field(1, gt=0)
    """learned: re-estimate the graph every this many rounds."""
    smoothing: float = Field(0.5, gt=0, le=1)
    """learned: weight of a new estimate against the current graph (1 = replace)."""
    normalize: bool = True
    """Divide the weights by the largest weighted degree, so η·λ ≤ 1 is always stable."""
    force: bool = False
    """Allow η·λ·(max weighted degree) > 1 (the server step may diverge)."""

    @model_validator(mode="after")
    def _consistent(self) -> GraphSettings:
        if not self.weight_min <= self.weight_max:
            raise ValueError(f"weight_min, weight_max: need weight_min <= weight_max, got "
                             f"{self.weight_min} and {self.weight_max}")
        if self.kind == "file" and not self.path:
            raise ValueError("path: required when kind = 'file'")
        return self


class MiraSettings(AlgorithmSettings):
    """MIRA's settings (the `[mira]` table)."""

    algorithm = "mira"
    lam: float = Field(1.0, ge=0)
    """λ: strength of the task-graph regulariser (0 = local training)."""
    eta: float = Field(0.5, ge=0)
    """η: the server's step size; the server step uses η·λ."""
    neighbours: Literal["all", "sampled"] = "sampled"
    """Which θ_l enter the server step: 'sampled' (only neighbours trained this round, as in the paper's
    update and FedU) or 'all' (the newest copy the server holds of every neighbour)."""
    graph: GraphSettings = Field(default_factory=GraphSettings)

    @staticmethod
    def search_space(trial, cfg, clients=()) -> dict:
        """The learning rate, the step η·λ from 0 (η = 1, so λ = 0, local training, is inside the space)
        to the stability bound of the clients' graph, 1/(max weighted degree), at most 1 (1 for a
        normalised graph) and, for a learned graph, mira.graph.knn from 1 to 4."""
        space = AlgorithmSettings.search_space(trial, cfg)
        upper, graph = 1.0, cfg.mira.graph
        if clients and not graph.normalize:
            from ...graph import build_graph, max_degree
            degree = max_degree(build_graph(graph, [c.family for c in clients], cfg.seed)[0])
            upper = min(1.0, 1.0 / degree) if degree > 0 else 1.0
        space["mira"] = {"eta": 1.0, "lam": trial.suggest_float("mira.eta*lam", 0.0, upper)}
        if graph.kind == "learned":
            space["mira"]["graph"] = {"knn": trial.suggest_int("mira.graph.knn", 1, 4)}
        return space
