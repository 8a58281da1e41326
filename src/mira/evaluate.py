"""Evaluation: token-level test loss of each client's model on each client's test set."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .data.encode import IGNORE, Encoded, collate
from .lora import AdapterSlot
from .model import virtual_tokens


def response_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy over the response tokens of a collated batch, projecting onto the vocabulary only
    at the positions where some example's next token is scored (the responses): equal to the model's
    own `.loss` (mean over scored tokens), at a fraction of the output layer's cost."""
    prefix = virtual_tokens(model)  # P-tuning's logits start with its virtual tokens'
    positions = (batch["labels"][:, 1:] != IGNORE).any(dim=0).nonzero().squeeze(1)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   logits_to_keep=positions + prefix).logits
    targets = batch["labels"][:, positions + 1]
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE, reduction=reduction)


@torch.no_grad()
def test_loss(model: torch.nn.Module, examples: list[Encoded], batch_size: int, pad_id: int) -> float:
    """Mean cross-entropy over the response tokens of `examples` with the adapter now in the model
    (in eval mode: no dropout)."""
    model.eval()
    device = next(model.parameters()).device
    total = 0.0
    for start in range(0, len(examples), batch_size):
        batch = {k: v.to(device) for k, v in collate(examples[start:start + batch_size], pad_id).items()}
        total += response_loss(model, batch, reduction="sum").item()
    return total / max(response_tokens(examples), 1)


def losses_on(model: torch.nn.Module, slot: AdapterSlot, thetas: torch.Tensor, examples: list[Encoded],
              batch_size: int, pad_id: int) -> list[float]:
    """The test loss of every adapter (row of `thetas`) on one test set; identical adapters (as under
    FedIT) are evaluated once."""
    out: list[float] = []
    for i, theta in enumerate(thetas):
        twin = next((j for j in range(i) if torch.equal(theta, thetas[j])), None)
        if twin is None:
            slot.set(theta)
        out.append(out[twin] if twin is not None else test_loss(model, examples, batch_size, pad_id))
    return out


def response_tokens(examples: list[Encoded]) -> int:
    """Number of tokens `test_loss` scores in `examples`."""
    return sum(sum(label != IGNORE for label in e.labels[1:]) for e in examples)
