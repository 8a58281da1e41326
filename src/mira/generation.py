"""Generation metrics: greedy decoding, ROUGE-L (rouge-score, as in Super-NaturalInstructions) and
exact match, against every reference answer of an example."""

from __future__ import annotations

import inspect
import re
import string
from functools import cache

import torch
from transformers import DynamicCache

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
    """Greedy decoding of a batch of (left-padded) prompts: prompts followed by their continuations."""
    if virtual_tokens(model):
        return _greedy_after_virtual_tokens(model, tokenizer, ids, mask, max_new_tokens)
    device = next(model.parameters()).device
    return model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                          max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                          eos_token_id=tokenizer.eos_token_id)


def _greedy_after_virtual_tokens(model, tokenizer, ids: torch.Tensor, mask: torch.Tensor,
                                 max_new_tokens: int) -> torch.Tensor:
    """Greedy decoding under a prompt-learning adapter (P-tuning), with the KV cache: the virtual tokens'
    embeddings, then each prompt at the positions PEFT's forward gives it unpadded (position ids from the
    attention mask, so left padding shifts nothing). PEFT 0.21's own generate decodes wrongly from the
    cache with transformers 5 (cf. huggingface/peft#2123) and ignores position ids."""
    base = model.get_base_model()
    device = next(model.parameters()).device
    ids, mask = ids.to(device), mask.to(device)
    embed = base.get_input_embeddings()
    prompts = model.get_prompt(batch_size=len(ids)).to(embed.weight.dtype)
    mask = torch.cat([torch.ones(len(ids), prompts.shape[1], dtype=mask.dtype, device=device), mask], dim=1)
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    # transformers 5 calls the cache argument `cache`, 4.x `past_key_values`; the cache fills in place
    kv = {"cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values": DynamicCache()}
    out = base(inputs_embeds=torch.cat([prompts, embed(ids)], dim=1), attention_mask=mask,
               position_ids=positions, use_cache=True, **kv)
    finished = torch.zeros(len(ids), dtype=torch.bool, device=device)
    new_tokens = []
    for _ in range(max_new_tokens):
        token = out.logits[:, -1].argmax(-1).masked_fill(finished, tokenizer.pad_token_id)
        new_tokens.append(token)
        finished |= token == tokenizer.eos_token_id
        if finished.all() or len(new_tokens) == max_new_tokens:
            break
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        positions = positions[:, -1:] + 1
        out = base(input_ids=token[:, None], attention_mask=mask, position_ids=positions, use_cache=True, **kv)
    return torch.cat([ids, torch.stack(new_tokens, dim=1)], dim=1)


@torch.no_grad()
def generate(model, tokenizer, encoded: list[Encoded], max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy continuations of the prompts (the unmasked prefix of each encoded example), in eval mode."""
    model.eval()
    prompts = [e.input_ids[:next((i for i, lab in enumerate(e.labels) if lab != IGNORE), len(e.labels))]
               for e in encoded]
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
