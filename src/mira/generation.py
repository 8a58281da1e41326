"""Generation metrics: greedy decoding, ROUGE-L (rouge-score, as in Super-NaturalInstructions) and
exact match, against every reference answer of an example."""

from __future__ import annotations

import re
import string
import warnings
from functools import cache

import torch

from .data import Example
from .data.encode import IGNORE, Encoded
from .model import virtual_tokens


@cache
def _scorer():
    # imported on first use: rouge-score pulls in nltk (0.3 s), which a training-only process never needs
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def normalize(text: str) -> str:
    """Lower case, no punctuation, single spaces."""
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    return re.sub(r"\s+", " ", text).strip()


def rouge_l(prediction: str, references: tuple[str, ...]) -> float:
    """ROUGE-L F-measure against the best-matching reference."""
    return max(_scorer().score(ref, prediction)["rougeL"].fmeasure for ref in references)


def exact_match(prediction: str, references: tuple[str, ...]) -> float:
    return float(any(normalize(prediction) == normalize(ref) for ref in references))


@torch.no_grad()
def greedy(model, tokenizer, ids: torch.Tensor, mask: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Greedy decoding of a batch of (left-padded) prompts: prompts followed by their continuations.

    Under a prompt-learning adapter (P-tuning) PEFT 0.21's generate with transformers 5 decodes
    wrongly from the KV cache (the answers stop or go astray after a token; cf. huggingface/peft#2123),
    so there every step recomputes the whole sequence instead."""
    device = next(model.parameters()).device
    with warnings.catch_warnings():  # PEFT's P-tuning ignores the position ids generate passes, and says so
        warnings.filterwarnings("ignore", message="Position ids are not supported")
        return model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                              max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                              eos_token_id=tokenizer.eos_token_id, use_cache=virtual_tokens(model) == 0)


@torch.no_grad()
def generate(model, tokenizer, encoded: list[Encoded], max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy continuations of the prompts (the unmasked prefix of each encoded example), in eval mode.
    Under P-tuning one prompt at a time: PEFT ignores position ids there, so left padding would shift
    the prompt's positions against the virtual tokens'."""
    model.eval()
    prompts = [e.input_ids[:next((i for i, lab in enumerate(e.labels) if lab != IGNORE), len(e.labels))]
               for e in encoded]
    batch_size = 1 if virtual_tokens(model) else batch_size
    outputs = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        width = max(len(p) for p in chunk)
        ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(chunk):  # left padding, so every continuation starts at the same column
            ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
        out = greedy(model, tokenizer, ids, mask, max_new_tokens)
        outputs += tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
    return [o.strip() for o in outputs]


def generation_scores(model, tokenizer, examples: list[Example], encoded: list[Encoded],
                      max_new_tokens: int, batch_size: int) -> dict[str, float]:
    """Mean ROUGE-L and exact match of greedy answers, with the adapter now in the model."""
    predictions = generate(model, tokenizer, encoded, max_new_tokens, batch_size)
    refs = [e.references or (e.response,) for e in examples]
    return {"rouge_l": sum(map(rouge_l, predictions, refs)) / len(refs),
            "exact_match": sum(map(exact_match, predictions, refs)) / len(refs)}
