"""Run configuration: typed sections, TOML files, `key=value` overrides and validation."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w


class ConfigError(ValueError):
    """A configuration value, key or file is invalid; the message says which and why."""


@dataclass
class ModelConfig:
    name: str = "smollm2-135m-instruct"
    """Base model: 'smollm2-135m-instruct' (embedded), 'tiny-random' (tests), a hub id, a local
    directory, or a path to a .gguf file."""
    lora_r: int = 8
    """LoRA rank r."""
    lora_alpha: float = 16.0
    """LoRA scaling α (the update is scaled by α/r)."""
    lora_dropout: float = 0.0
    """Dropout on the LoRA input, in [0, 1)."""
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    """Names of the linear layers that get LoRA adapters."""
    prompt_format: str = "chat"
    """'chat' (the tokenizer's chat template) or 'plain' (an instruction/response template)."""
    max_length: int = 128
    """Tokens per example; prompts are cut from the left first, the response is never dropped."""
    autocast: str = "none"
    """Forward passes (training and evaluation) under torch.autocast in this dtype: 'none' (float32)
    or 'bfloat16' (weights and adapters stay float32). bfloat16 is about 2x faster on CPUs with
    AVX512-BF16 or AMX and on GPUs, but many times slower on CPUs without them."""


@dataclass
class DataConfig:
    source: str = "synthetic"
    """'synthetic' (embedded 9-task suite, 3 families), 'natural_instructions' (a directory of task
    files), 'dolly' (Dolly-15k JSONL, or its Hub id) or 'records' (generic JSONL/CSV/Hub dataset)."""
    path: str = ""
    """File, directory or Hugging Face dataset id to read (dolly: defaults to databricks/databricks-dolly-15k)."""
    tasks: list[str] = field(default_factory=list)
    """Keep only these tasks (NI task names, Dolly categories, values of task_field); empty = all."""
    families: str = ""
    """JSON file mapping task name to family (NI; default family = the task's source dataset)."""
    partition: str = "task"
    """'task' (one client per task), 'split' (clients_per_task clients per task), 'dirichlet'
    (num_clients clients, task mix ~ Dirichlet(alpha)) or 'iid' (num_clients clients)."""
    clients_per_task: int = 1
    num_clients: int = 0
    """Number of clients for 'dirichlet' and 'iid'."""
    alpha: float = 0.5
    """Dirichlet concentration: small = each client holds few tasks."""
    num_positive_examples: int = 0
    """NI: worked examples from 'Positive Examples' put in every prompt."""
    prompt_field: str = "instruction"
    response_field: str = "response"
    context_field: str = ""
    """records: optional column appended to the prompt as context."""
    task_field: str = ""
    """records: column naming each record's task (empty: the whole file is one task)."""
    train_per_client: int = 48
    """Training examples per client (federated clients are data-poor)."""
    test_per_client: int = 16
    """Held-out test examples per client."""
    val_per_client: int = 16
    """Validation examples per client, taken from its training pool after the training examples
    (disjoint from train and test; the test split does not depend on it); 0 = no validation."""


@dataclass
class TrainConfig:
    local_steps: int = 10
    """R: optimiser steps per sampled client per round (steps, not epochs)."""
    batch_size: int = 8
    """Examples per local step."""
    lr: float = 2e-3
    """Local learning rate."""
    optimizer: str = "adamw"
    """'adamw' or 'sgd' (paper-exact)."""
    weight_decay: float = 0.0
    """Decoupled weight decay (adamw) or L2 penalty (sgd)."""
    grad_clip: float = 1.0
    """Max global gradient norm per step; 0 disables clipping."""
    persistent_optimizer: bool = False
    """Keep each client's optimiser state across the rounds it is sampled in."""


@dataclass
class FederationConfig:
    algorithm: str = "mira"
    """The federated algorithm, by its registered name (each is a module of mira.algorithms whose
    docstring describes it; choices listed in braces)."""
    rounds: int = 6
    """Communication rounds."""
    sample_fraction: float = 0.34
    """Fraction of clients sampled per round (at least one); ignored if sample_count > 0."""
    sample_count: int = 0
    """Clients sampled per round; 0 = use sample_fraction."""
    lam: float = 1.0
    """MIRA's λ: strength of the task-graph regulariser (0 = local training)."""
    eta: float = 0.5
    """MIRA's server step size η; the server step uses η·λ."""
    max_update_norm: float = 0.0
    """Server-side bound on the L2 norm of a client's update θ_new − θ_old (larger ones are scaled
    down); 0 = no bound. Updates with NaN/Inf or a wrong shape are always rejected."""
    clip_to_median: float = 0.0
    """Robust aggregation: scale down any update longer than this multiple of the median norm of the
    round's updates (e.g. 2; 0 = off), so a client sending a scaled-up update cannot dominate."""
    neighbours: str = "sampled"
    """Which θ_l enter MIRA's step: 'sampled' (only neighbours trained this round, as in the paper's
    update and FedU) or 'all' (the newest copy the server holds of every neighbour)."""
    mu: float = 0.01
    """Proximal strength: FedProx's μ, and Ditto's λ pulling personal adapters to the global one."""


@dataclass
class GraphConfig:
    kind: str = "uniform"
    """'uniform' (complete graph), 'ground_truth' (the data's task families), 'random' (the paper's
    random weights a_kl: see density, weight_min, weight_max), 'file', or 'learned' (estimated from
    the clients' adapter updates during training; starts from graph.path if given, else uniform)."""
    density: float = 0.5
    """random: probability that a pair of clients is linked."""
    weight_min: float = 0.0
    """random: smallest edge weight (weights are uniform in [weight_min, weight_max])."""
    weight_max: float = 1.0
    """random: largest edge weight."""
    path: str = ""
    """CSV or JSON K×K matrix, for kind = 'file' (or the prior of kind = 'learned')."""
    knn: int = 2
    """learned: keep each client's knn most similar clients (0 = keep similarities >= threshold)."""
    threshold: float = 0.5
    """learned, knn = 0: smallest cosine similarity of two clients' updates that makes an edge."""
    update_every: int = 1
    """learned: re-estimate the graph every this many rounds."""
    smoothing: float = 0.5
    """learned: weight of a new estimate against the current graph (1 = replace)."""
    normalize: bool = True
    """Divide the weights by the largest weighted degree, so η·λ ≤ 1 is always stable."""
    force: bool = False
    """Allow η·λ·(max weighted degree) > 1 (the server step may diverge)."""


@dataclass
class EvalConfig:
    eval_every: int = 3
    batch_size: int = 16
    """Examples per evaluation forward pass."""
    global_loss: bool = True
    """Also evaluate each client's model on every other client's test set."""
    generate_per_client: int = 8
    """Test examples per client answered greedily for ROUGE-L and exact match, at round 0 and at
    the end (0 = off)."""
    max_new_tokens: int = 32
    """Longest generated answer, in tokens."""


@dataclass
class FlowerConfig:
    precision: str = "float32"
    """Adapters on the wire: 'float32' (exact) or 'bfloat16' (half the bytes; rounds every value)."""
    round_timeout: float = 600.0
    """Seconds the server waits for the clients' replies in a round; a client later than that is
    skipped for the round (its adapter stays as it was)."""
    min_replies: int = 1
    """Fewest successful client replies a round needs; with fewer the run stops (the last
    checkpoint stays valid: continue with resume)."""
    connect_timeout: float = 120.0
    """Seconds the server waits at the start for a node of every partition to answer."""


@dataclass
class Config:
    name: str = "default"
    """Run name; results go to <out_dir>/<name>/."""
    out_dir: str = "runs"
    """Directory holding the runs."""
    seed: int = 0
    """Seed for data, LoRA initialisation, client sampling, batches and dropout."""
    device: str = "auto"
    """'auto' (CUDA if present), 'cpu' or 'cuda'."""
    checkpoint_every: int = 1
    """Write the whole federated state every this many rounds (and after the last); 0 = never."""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    federation: FederationConfig = field(default_factory=FederationConfig)
    graph: GraphConfig = field(default_factory=GraphConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    flower: FlowerConfig = field(default_factory=FlowerConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name


CHOICES = {
    "model.prompt_format": {"chat", "plain"},
    "model.autocast": {"none", "bfloat16"},
    "train.optimizer": {"adamw", "sgd"},
    "federation.neighbours": {"all", "sampled"},
    "graph.kind": {"uniform", "ground_truth", "random", "file", "learned"},
    "data.source": {"synthetic", "natural_instructions", "dolly", "records"},
    "data.partition": {"task", "split", "dirichlet", "iid"},
    "device": {"auto", "cpu", "cuda"},
    "flower.precision": {"float32", "bfloat16"},
}
POSITIVE = {"model.lora_r", "model.max_length", "train.local_steps", "train.batch_size",
            "train.lr", "federation.rounds", "eval.eval_every", "eval.batch_size",
            "data.train_per_client", "data.test_per_client", "data.clients_per_task", "data.alpha",
            "eval.max_new_tokens", "graph.update_every", "flower.round_timeout", "flower.min_replies", "flower.connect_timeout"}
NON_NEGATIVE = {"model.lora_dropout", "train.weight_decay", "train.grad_clip", "federation.sample_count",
                "federation.lam", "federation.eta", "federation.mu", "graph.knn", "graph.threshold", "federation.max_update_norm", "federation.clip_to_median", "seed", "checkpoint_every",
                "data.num_clients", "data.num_positive_examples", "eval.generate_per_client", "data.val_per_client"}


def choices(key: str) -> set[str] | None:
    """The values option `key` may take, if it is a choice (algorithms: those registered)."""
    if key == "federation.algorithm":
        from .algorithms import ALGORITHMS
        return set(ALGORITHMS)
    return CHOICES.get(key)


def _field_types(cls) -> dict[str, typing.Any]:
    return typing.get_type_hints(cls)


def _coerce(key: str, value, typ):
    """Check `value` against the annotated type; ints are accepted for floats."""
    if typing.get_origin(typ) is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected a list of strings, got {value!r}")
        return list(value)
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ is bool and not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {typ.__name__}, got {value!r} ({type(value).__name__})")
    return value


def from_dict(data: dict, source: str = "config") -> Config:
    """Build a Config from nested dicts (as read from TOML) over the defaults, and validate it."""
    cfg = Config()
    top_types = _field_types(Config)
    for key, value in data.items():
        if key not in top_types:
            raise ConfigError(f"{source}: unknown key '{key}'; valid keys: {', '.join(top_types)}")
        typ = top_types[key]
        if dataclasses.is_dataclass(typ):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: '{key}' must be a table ([{key}])")
            section = getattr(cfg, key)
            types = _field_types(typ)
            for sub, val in value.items():
                if sub not in types:
                    raise ConfigError(f"{source}: unknown key '{key}.{sub}'; valid keys in [{key}]: "
                                      f"{', '.join(types)}")
                setattr(section, sub, _coerce(f"{key}.{sub}", val, types[sub]))
        else:
            setattr(cfg, key, _coerce(key, value, typ))
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Raise ConfigError on out-of-range or inconsistent values."""
    def get(key):
        obj = cfg
        for part in key.split("."):
            obj = getattr(obj, part)
        return obj
    for key in [*CHOICES, "federation.algorithm"]:
        if get(key) not in (allowed := choices(key)):
            raise ConfigError(f"{key}: expected one of {sorted(allowed)}, got {get(key)!r}")
    for key in POSITIVE:
        if not get(key) > 0:
            raise ConfigError(f"{key}: must be > 0, got {get(key)!r}")
    for key in NON_NEGATIVE:
        if not get(key) >= 0:
            raise ConfigError(f"{key}: must be >= 0, got {get(key)!r}")
    if not 0 < cfg.federation.sample_fraction <= 1:
        raise ConfigError(f"federation.sample_fraction: must be in (0, 1], got {cfg.federation.sample_fraction}")
    if not 0 <= cfg.model.lora_dropout < 1:
        raise ConfigError(f"model.lora_dropout: must be in [0, 1), got {cfg.model.lora_dropout}")
    if cfg.data.source in ("natural_instructions", "records") and not cfg.data.path:
        raise ConfigError(f"data.path: required when data.source = '{cfg.data.source}'")
    if cfg.data.partition in ("dirichlet", "iid") and cfg.data.num_clients < 1:
        raise ConfigError(f"data.num_clients: required (>= 1) when data.partition = '{cfg.data.partition}'")
    if not 0 < cfg.graph.smoothing <= 1:
        raise ConfigError(f"graph.smoothing: must be in (0, 1], got {cfg.graph.smoothing}")
    if not 0 <= cfg.graph.density <= 1:
        raise ConfigError(f"graph.density: must be in [0, 1], got {cfg.graph.density}")
    if not 0 <= cfg.graph.weight_min <= cfg.graph.weight_max:
        raise ConfigError(f"graph.weight_min, graph.weight_max: need 0 <= weight_min <= weight_max, got "
                          f"{cfg.graph.weight_min} and {cfg.graph.weight_max}")
    if cfg.graph.kind == "file" and not cfg.graph.path:
        raise ConfigError("graph.path: required when graph.kind = 'file'")
    if cfg.seed >= 2**63:
        raise ConfigError(f"seed: must be < 2**63 (a 64-bit signed integer), got {cfg.seed}")
    if not cfg.name or "/" in cfg.name or cfg.name in {".", ".."}:
        raise ConfigError(f"name: must be a plain directory name, got {cfg.name!r}")


def parse_override(text: str) -> dict:
    """Turn 'section.key=value' into a nested dict; the value is parsed as TOML, else a string."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. train.lr=1e-3")
    key, raw = (s.strip() for s in text.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    out: dict = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def merge(a: dict, b: dict) -> dict:
    """`a` with `b` laid over it, table by table."""
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Read a TOML config file (optional) and apply `key=value` overrides on top of the defaults."""
    data: dict = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    for item in overrides:
        data = merge(data, parse_override(item))
        source = f"{source} + --set"
    return from_dict(data, source=source)


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def config_text(cfg: Config) -> str:
    """The configuration as TOML text (what config.toml holds; `from_dict(tomllib.loads(...))` reads it)."""
    return tomli_w.dumps(to_dict(cfg))


def save_config(cfg: Config, path: Path) -> None:
    path.write_text(config_text(cfg))


def describe_options() -> str:
    """One line per option with its default and documentation, for `--help`."""
    sections = [("", Config)] + [(f"{name}.", typ) for name, typ in _field_types(Config).items()
                                  if dataclasses.is_dataclass(typ)]
    lines = []
    for prefix, cls in sections:
        docs = _attribute_docs(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(_field_types(cls)[f.name]):
                continue
            key = prefix + f.name
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            choice = f" {{{', '.join(sorted(allowed))}}}" if (allowed := choices(key)) else ""
            doc = docs.get(f.name, "")
            lines.append(f"  {key} = {default!r}{choice}" + (f"\n      {doc}" if doc else ""))
    return "\n".join(lines)


def _attribute_docs(cls) -> dict[str, str]:
    """Docstrings written under dataclass fields (the attribute-docstring convention)."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body
    docs = {}
    for prev, node in zip(body, body[1:]):
        if (isinstance(prev, ast.AnnAssign) and isinstance(node, ast.Expr)
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            docs[prev.target.id] = " ".join(node.value.value.split())
    return docs


RESUMABLE_CHANGES = {"federation.rounds", "checkpoint_every"}


def resume_config(run_dir: str | Path, overrides: list[str] = ()) -> Config:
    """The configuration saved in `run_dir`, with `overrides` that may only extend the run
    (federation.rounds, checkpoint_every); the run stays where it is, even if the folder moved."""
    run_dir = Path(run_dir)
    saved_path = run_dir / "config.toml"
    if not saved_path.is_file():
        raise ConfigError(f"--resume {run_dir}: no config.toml there; not a mira run directory")
    saved = load_config(saved_path)
    cfg = load_config(saved_path, overrides)
    flat_saved, flat_new = flatten(to_dict(saved)), flatten(to_dict(cfg))
    if cfg.federation.rounds < saved.federation.rounds:
        raise ConfigError(f"--resume {run_dir}: federation.rounds may only be raised (saved "
                          f"{saved.federation.rounds}, now {cfg.federation.rounds})")
    changed = [k for k in flat_saved if flat_saved[k] != flat_new[k] and k not in RESUMABLE_CHANGES]
    if changed:
        raise ConfigError(f"--resume {run_dir}: the run was made with a different configuration ("
                          + "; ".join(f"{k}: saved {flat_saved[k]!r}, now {flat_new[k]!r}" for k in changed)
                          + "); only " + ", ".join(sorted(RESUMABLE_CHANGES)) + " may change on resume")
    cfg.out_dir, cfg.name = str(run_dir.parent), run_dir.name
    return cfg


def flatten(data: dict, prefix: str = "") -> dict:
    """Nested tables as one level of dotted keys."""
    out = {}
    for k, v in data.items():
        out |= flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v}
    return out
