"""Local training: R optimisation steps of one client's adapter on its own data."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import TrainConfig
from .data.encode import Encoded, collate
from .evaluate import response_loss
from .lora import AdapterSlot


@dataclass
class LocalResult:
    theta: torch.Tensor
    mean_loss: float
    num_examples: int
    optimizer_state: dict | None


def make_optimizer(params: list[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def train_local(model: torch.nn.Module, slot: AdapterSlot, theta: torch.Tensor, examples: list[Encoded],
                batches: list[list[int]], cfg: TrainConfig, pad_id: int, seed: int,
                optimizer_state: dict | None = None, on_step=None, regularizer=None, trainable=None) -> LocalResult:
    """Load `theta` into the model, run one optimiser step per batch, return the trained adapter.

    `seed` fixes dropout; `optimizer_state` resumes the client's optimiser (else a fresh one);
    `on_step(loss)` is called after every step (progress bars). The hooks of an algorithm's local
    objective: `regularizer(θ)` of the flat adapter is added to the loss (e.g. FedProx's proximal
    term); only the parameters whose names `trainable(name)` accepts are trained (FFA-LoRA: B only).
    """
    slot.set(theta)
    params = [p for p, name in zip(slot.params, slot.layout.names) if trainable is None or trainable(name)]
    optimizer = make_optimizer(params, cfg)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    device = slot.params[0].device
    torch.manual_seed(seed)
    model.train()
    losses = []
    for batch_ids in batches:
        batch = {k: v.to(device) for k, v in collate([examples[i] for i in batch_ids], pad_id).items()}
        loss = response_loss(model, batch)
        objective = loss if regularizer is None else loss + regularizer(torch.cat([p.flatten() for p in slot.params]))
        objective.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if on_step is not None:
            on_step(losses[-1])
    model.eval()
    return LocalResult(theta=slot.get(), mean_loss=sum(losses) / max(len(losses), 1),
                       num_examples=len(examples),
                       optimizer_state=optimizer.state_dict() if cfg.persistent_optimizer else None)
