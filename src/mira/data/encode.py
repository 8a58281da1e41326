"""Prompt formatting, tokenisation with the response-only loss mask, batching and padding."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from . import Example

IGNORE = -100
PLAIN_TEMPLATE = "### Instruction:\n{prompt}\n\n### Response:\n"


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]
    """Equal to input_ids on response tokens, IGNORE on prompt tokens."""


def format_prompt(prompt: str, tokenizer, prompt_format: str) -> str:
    """The text that precedes the response: the chat template's user turn, or a plain template."""
    if prompt_format == "chat" and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                             tokenize=False, add_generation_prompt=True)
    return PLAIN_TEMPLATE.format(prompt=prompt)


def encode(example: Example, tokenizer, max_length: int, prompt_format: str = "chat") -> Encoded:
    """Tokenise prompt and response (+ EOS); mask the prompt out of the loss.

    Over `max_length`, the prompt is cut from the left (its end, next to the response, is kept); the
    response keeps at least half the budget and is cut at its end only if it alone is too long.
    """
    prompt_ids = tokenizer(format_prompt(example.prompt, tokenizer, prompt_format),
                           add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(example.response, add_special_tokens=False)["input_ids"]
    response_ids = response_ids + [tokenizer.eos_token_id]
    overflow = len(prompt_ids) + len(response_ids) - max_length
    if overflow > 0:
        keep_response = max(max_length - len(prompt_ids), max_length - max_length // 2)
        response_ids = response_ids[:keep_response]
        prompt_ids = prompt_ids[len(prompt_ids) - (max_length - len(response_ids)):]
    return Encoded(prompt_ids + response_ids, [IGNORE] * len(prompt_ids) + response_ids)


def collate(batch: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch to its longest example."""
    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


GROUP_BATCHES = 8
"""Length grouping sorts each run of this many consecutive batches' examples by length."""


def batch_schedule(num_examples: int, batch_size: int, steps: int, seed: int, client: int, round_: int,
                   lengths: list[int] | None = None) -> list[list[int]]:
    """Example indices for each local step: shuffled passes over the data, a pure function of
    (seed, client, round) so every runner and every algorithm sees the same batches.

    With `lengths` (each example's token count), examples of similar length are batched together:
    each run of GROUP_BATCHES consecutive batches keeps its examples, sorted by length (within each
    pass) and cut into batches again, whose order is then shuffled: less padding, the same examples.
    """
    rng = random.Random(f"batches-{seed}-{client}-{round_}")
    size = min(batch_size, num_examples)
    stream: list[int] = []
    while len(stream) < steps * size:
        order = list(range(num_examples))
        rng.shuffle(order)
        stream += reversed(order)
    stream = stream[:steps * size]
    if lengths is not None:
        chunk = GROUP_BATCHES * size
        for start in range(0, len(stream), chunk):
            # sorted (stably) by length within each pass over the data, so no batch holds an example twice
            positions = range(start, min(start + chunk, len(stream)))
            run = [stream[i] for i in sorted(positions, key=lambda i: (i // num_examples, lengths[stream[i]]))]
            batches = [run[i:i + size] for i in range(0, len(run), size)]
            rng.shuffle(batches)
            stream[start:start + chunk] = [i for batch in batches for i in batch]
    return [stream[i * size:(i + 1) * size] for i in range(steps)]
