"""Evaluation: token-level test loss of each client's model on each client's test set."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .data.encode import IGNORE, Encoded, collate
from .lora import AdapterSlot


@torch.no_grad()
def test_loss(model: torch.nn.Module, examples: list[Encoded], batch_size: int, pad_id: int) -> float:
    """Mean cross-entropy over the response tokens of `examples` with the adapter now in the model."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for start in range(0, len(examples), batch_size):
        batch = {k: v.to(device) for k, v in collate(examples[start:start + batch_size], pad_id).items()}
        # Project onto the vocabulary only where a next token is scored (the responses).
        positions = (batch["labels"][:, 1:] != IGNORE).any(dim=0).nonzero().squeeze(1)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       logits_to_keep=positions).logits
        targets = batch["labels"][:, positions + 1]
        total += F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(),
                                 ignore_index=IGNORE, reduction="sum").item()
        count += int((targets != IGNORE).sum())
    return total / max(count, 1)


def loss_matrix(model: torch.nn.Module, slot: AdapterSlot, thetas: torch.Tensor,
                test_sets: list[list[Encoded]], batch_size: int, pad_id: int,
                cross: bool = True) -> torch.Tensor:
    """(K × K) losses: entry [i, j] is client i's model on client j's test set.

    The diagonal holds each client's *local* loss. With `cross=False` only the diagonal is computed
    (the rest is NaN). Identical adapters (as under FedIT) are evaluated once.
    """
    num_clients = thetas.shape[0]
    out = torch.full((num_clients, num_clients), float("nan"))
    for i in range(num_clients):
        twin = next((j for j in range(i) if torch.equal(thetas[i], thetas[j])), None)
        loaded = False
        for j in range(num_clients) if cross else [i]:
            if twin is not None and not torch.isnan(out[twin, j]):
                out[i, j] = out[twin, j]
                continue
            if not loaded:
                slot.set(thetas[i])
                loaded = True
            out[i, j] = test_loss(model, test_sets[j], batch_size, pad_id)
    return out


def response_tokens(examples: list[Encoded]) -> int:
    """Number of tokens `test_loss` scores in `examples`."""
    return sum(sum(label != IGNORE for label in e.labels[1:]) for e in examples)


def global_losses(matrix: torch.Tensor, test_sets: list[list[Encoded]]) -> torch.Tensor:
    """Each client's model on the pooled test sets of all clients (token-weighted, like one set)."""
    w = torch.tensor([response_tokens(t) for t in test_sets], dtype=matrix.dtype)
    return (matrix * w).sum(dim=1) / w.sum()
