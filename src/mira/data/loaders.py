"""Readers for real instruction data: Natural Instructions task files, Dolly-15k, generic JSONL/CSV.

Every reader returns `Task`s (a name, a family, and all its examples) and fails loudly on bad input:
the error names the file, the line or instance, the field and what was expected. Nothing half-read is
returned.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from . import DataError, Example, Task

DOLLY_CATEGORIES = ("brainstorming", "classification", "closed_qa", "creative_writing", "general_qa",
                    "information_extraction", "open_qa", "summarization")
DOLLY_HUB_ID = "databricks/databricks-dolly-15k"


# ---------------------------------------------------------------- records from files or the Hub

def read_records(source: str) -> list[tuple[str, dict]]:
    """(location, record) pairs from a .jsonl/.json/.csv file, or from a Hugging Face dataset id."""
    path = Path(source).expanduser()
    if path.is_file():
        return _read_file(path)
    if path.exists() or source.startswith((".", "/", "~")) or Path(source).suffix in {".jsonl", ".json", ".csv"}:
        raise DataError(f"{source}: not a readable data file")
    return _read_hub(source)


def _read_file(path: Path) -> list[tuple[str, dict]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        return [(f"{path}:{i}", row) for i, row in enumerate(reader, 2)]
    if path.suffix.lower() == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
        if not isinstance(rows, list):
            raise DataError(f"{path}: expected a JSON list of records")
        return [(f"{path}: record {i}", r) for i, r in enumerate(rows)]
    records = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append((f"{path}:{i}", json.loads(line)))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{i}: invalid JSON ({exc.msg} at column {exc.colno}); "
                            "expected one JSON object per line") from None
    return records


def _read_hub(dataset_id: str) -> list[tuple[str, dict]]:
    try:
        from datasets import load_dataset
    except ImportError:
        raise DataError(f"{dataset_id}: not a local file; loading from the Hugging Face Hub needs the "
                        "'datasets' package (pip install datasets)") from None
    try:
        rows = load_dataset(dataset_id, split="train")
    except Exception as exc:  # the Hub client raises many types (offline, not found, auth)
        raise DataError(f"{dataset_id}: not a local file, and the Hugging Face Hub could not provide it "
                        f"({type(exc).__name__}: {exc})") from None
    return [(f"{dataset_id}[{i}]", dict(r)) for i, r in enumerate(rows)]


def _field(record: dict, key: str, where: str, allow_empty: bool = False) -> str:
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if key not in record or record[key] is None:
        raise DataError(f"{where}: missing field '{key}' (expected a string)")
    value = record[key]
    if not isinstance(value, str):
        raise DataError(f"{where}: field '{key}' must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise DataError(f"{where}: field '{key}' is empty")
    return value


def _group(examples_by_task: dict[str, list[Example]]) -> list[Task]:
    """One task per key, each its own family."""
    return [Task(name, name, exs) for name, exs in examples_by_task.items()]


# ---------------------------------------------------------------- Dolly-15k and generic records

def dolly_prompt(instruction: str, context: str) -> str:
    return f"{instruction}\n\nContext:\n{context}" if context.strip() else instruction


def load_dolly(source: str = DOLLY_HUB_ID) -> list[Task]:
    """Dolly-15k (`instruction`, `context`, `response`, `category`): one task per category."""
    by_category: dict[str, list[Example]] = {}
    for where, rec in read_records(source):
        category = _field(rec, "category", where)
        if category not in DOLLY_CATEGORIES:
            raise DataError(f"{where}: field 'category' is {category!r}; expected one of "
                            f"{', '.join(DOLLY_CATEGORIES)}")
        prompt = dolly_prompt(_field(rec, "instruction", where), _field(rec, "context", where, allow_empty=True))
        response = _field(rec, "response", where)
        by_category.setdefault(category, []).append(Example(prompt, response, (response,)))
    if not by_category:
        raise DataError(f"{source}: no records")
    return _group(dict(sorted(by_category.items())))


def load_records(source: str, prompt_field: str, response_field: str, task_field: str = "",
                 context_field: str = "") -> list[Task]:
    """Generic instruction data: user-named prompt, response, optional context and task columns.
    Without a task column every record belongs to one task named after the file."""
    by_task: dict[str, list[Example]] = {}
    default_task = Path(source).stem
    for where, rec in read_records(source):
        prompt = _field(rec, prompt_field, where)
        if context_field:
            prompt = dolly_prompt(prompt, _field(rec, context_field, where, allow_empty=True))
        response = _field(rec, response_field, where)
        task = _field(rec, task_field, where) if task_field else default_task
        by_task.setdefault(task, []).append(Example(prompt, response, (response,)))
    if not by_task:
        raise DataError(f"{source}: no records")
    return _group(by_task)


# ---------------------------------------------------------------- Natural Instructions

def ni_prompt(definition: str, positives: list[dict], text: str) -> str:
    """Definition, then k worked examples, then the instance (the Super-NaturalInstructions layout)."""
    parts = [f"Definition: {definition.strip()}"]
    for i, ex in enumerate(positives, 1):
        parts.append(f"Example {i}:\nInput: {ex['input'].strip()}\nOutput: {ex['output'].strip()}")
    parts.append(f"Now complete the following.\nInput: {text.strip()}\nOutput:")
    return "\n\n".join(parts)


def load_ni_task(path: Path, num_positive: int = 0, family_from: str = "source") -> Task:
    """One Natural Instructions task file: prompt = definition (+ k positive examples) + input;
    target = the first output; all outputs kept as references. Family = the task's source dataset
    (`family_from` 'source') or its first category ('category')."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.object[exc.start:exc.start + 1]!r})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object with 'Definition' and 'Instances'")
    definition = data.get("Definition")
    if isinstance(definition, list) and definition and all(isinstance(d, str) for d in definition):
        definition = definition[0]
    if not isinstance(definition, str) or not definition.strip():
        raise DataError(f"{path}: field 'Definition' must be a string or a list of strings")
    positives = data.get("Positive Examples", [])
    if num_positive:
        if not isinstance(positives, list) or len(positives) < num_positive:
            raise DataError(f"{path}: {num_positive} positive examples asked for, "
                            f"'Positive Examples' has {len(positives) if isinstance(positives, list) else 0}")
        for i, ex in enumerate(positives[:num_positive]):
            for key in ("input", "output"):
                _field(ex, key, f"{path}: positive example {i}")
    instances = data.get("Instances")
    if not isinstance(instances, list) or not instances:
        raise DataError(f"{path}: field 'Instances' is missing or empty; expected a list of "
                        "{input, output: [str, ...]}")
    examples = []
    for i, inst in enumerate(instances):
        where = f"{path}: instance {i}" + (f" (id {inst['id']})" if isinstance(inst, dict) and "id" in inst else "")
        text = _field(inst, "input", where, allow_empty=True)
        outputs = inst.get("output")
        if not isinstance(outputs, list) or not outputs or not all(isinstance(o, str) for o in outputs):
            raise DataError(f"{where}: field 'output' must be a non-empty list of strings, got {outputs!r:.60}")
        examples.append(Example(ni_prompt(definition, positives[:num_positive], text), outputs[0], tuple(outputs)))
    source = data.get("Categories" if family_from == "category" else "Source")
    family = (source[0] if isinstance(source, list) and source else str(source or Path(path).stem))
    return Task(Path(path).stem, family.split(" (")[0].strip(), examples)


def load_natural_instructions(source: str, num_positive: int = 0, families: dict[str, str] | None = None,
                              family_from: str = "source") -> list[Task]:
    """Every `*.json` task file in a directory (or one file); `families` maps task name → family,
    which is otherwise its source or category (`family_from`)."""
    path = Path(source).expanduser()
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    if not files or not files[0].exists():
        raise DataError(f"{source}: no Natural Instructions task files (*.json) found")
    tasks = [load_ni_task(f, num_positive, family_from) for f in files]
    if families:
        unknown = sorted(set(families) - {t.name for t in tasks})
        if unknown:
            raise DataError(f"data.families names tasks that were not loaded: {', '.join(unknown)}")
        for t in tasks:
            t.family = families.get(t.name, t.family)
    return tasks
