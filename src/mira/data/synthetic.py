"""A deterministic synthetic multi-task suite: 9 instruction tasks in 3 families, one client each.

Tasks in a family share their input distribution and output vocabulary (word lists, numbers, labels)
and differ in the rule, so related clients help each other and unrelated ones interfere: the
ground-truth family structure is the task graph a graph-based method should exploit.
"""

from __future__ import annotations

import random
from typing import Callable

from . import Example, Task

WORDS = ("apple river stone cloud tiger lamp violin garden mirror candle rocket forest pepper "
         "window castle ocean pencil rabbit silver thunder basket dragon meadow planet").split()
POSITIVE = "wonderful delightful excellent lovely brilliant charming superb pleasant".split()
NEGATIVE = "terrible awful dreadful boring horrible dismal clumsy miserable".split()
SUBJECTS = "film meal hotel concert book trip game lesson".split()
TOPICS = {
    "sports": "goal match referee stadium tennis coach".split(),
    "food": "soup bread cheese salad noodles cake".split(),
    "weather": "rain snow storm sunshine wind fog".split(),
    "music": "guitar drums melody choir piano song".split(),
}
WHEN = "Yesterday|Last week|This morning|On Sunday|At the zoo|Near the lake".split("|")
ANIMALS = {
    "mammal": "dog horse whale bat cow lion".split(),
    "bird": "eagle sparrow owl penguin parrot crow".split(),
    "fish": "salmon trout shark tuna cod carp".split(),
    "reptile": "lizard snake turtle crocodile gecko iguana".split(),
}


def _words(rng: random.Random) -> list[str]:
    return rng.sample(WORDS, rng.randint(3, 5))


def _pair(rng: random.Random) -> tuple[int, int]:
    return rng.randint(10, 99), rng.randint(10, 99)


def _words_task(instruction: str, rule: Callable[[list[str]], list[str]]):
    def make(rng):
        w = _words(rng)
        return f"{instruction}\nWords: {' '.join(w)}", " ".join(rule(w))
    return make


def _arith_task(instruction: str, rule: Callable[[int, int], int]):
    def make(rng):
        a, b = _pair(rng)
        return f"{instruction}\nNumbers: {a} and {b}", str(rule(a, b))
    return make


def _sentiment(rng):
    label = rng.choice(["positive", "negative"])
    adj = rng.choice(POSITIVE if label == "positive" else NEGATIVE)
    return (f"Classify the sentiment of the sentence as positive or negative.\n"
            f"Sentence: The {rng.choice(SUBJECTS)} was {adj}."), label


def _topic(rng):
    label = rng.choice(sorted(TOPICS))
    a, b = rng.sample(TOPICS[label], 2)
    return (f"Classify the topic of the sentence as sports, food, weather or music.\n"
            f"Sentence: Everyone talked about the {a} and the {b}."), label


def _animal(rng):
    label = rng.choice(sorted(ANIMALS))
    return (f"Classify the animal as mammal, bird, fish or reptile.\n"
            f"Sentence: {rng.choice(WHEN)} I saw a {rng.choice(ANIMALS[label])}."), label


TASKS: dict[str, tuple[str, Callable[[random.Random], tuple[str, str]]]] = {
    "reverse_words": ("words", _words_task("Write the words in reverse order.", lambda w: w[::-1])),
    "sort_words": ("words", _words_task("Write the words in alphabetical order.", sorted)),
    "rotate_words": ("words", _words_task("Move the first word to the end.", lambda w: w[1:] + w[:1])),
    "add": ("arithmetic", _arith_task("Add the two numbers.", lambda a, b: a + b)),
    "difference": ("arithmetic", _arith_task("Subtract the smaller number from the larger one.",
                                             lambda a, b: abs(a - b))),
    "maximum": ("arithmetic", _arith_task("Write the larger of the two numbers.", max)),
    "sentiment": ("classification", _sentiment),
    "topic": ("classification", _topic),
    "animal": ("classification", _animal),
}


def synthetic_tasks(examples_per_task: int, seed: int = 0) -> list[Task]:
    """Every task with `examples_per_task` distinct examples, deterministic in `seed`."""
    tasks = []
    for index, (name, (family, make)) in enumerate(TASKS.items()):
        rng = random.Random(f"{seed}-{index}-{name}")
        seen: dict[str, str] = {}
        for _ in range(50 * examples_per_task):
            prompt, response = make(rng)
            seen.setdefault(prompt, response)
            if len(seen) == examples_per_task:
                break
        if len(seen) < examples_per_task:
            raise ValueError(f"synthetic task {name} has fewer than {examples_per_task} distinct examples")
        tasks.append(Task(name, family, [Example(p, r, (r,)) for p, r in seen.items()]))
    return tasks
