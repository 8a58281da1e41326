"""Run configuration: typed sections, TOML files, `key=value` overrides and validation."""

from __future__ import annotations

import tomllib
import typing
import warnings
from pathlib import Path
from typing import ClassVar, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator, model_validator

from .errors import MiraError


class ConfigError(MiraError):
    """A configuration value, key or file is invalid; the message says which and why."""


class Section(BaseModel):
    """A table of the configuration: typed fields, each documented by the docstring under it (shown by
    `--help` and `mira config`); unknown keys and values of the wrong type are refused (an int is
    accepted for a float), also when a field is assigned after loading (`cfg.train.lr = -1` raises)."""

    model_config = ConfigDict(extra="forbid", strict=True, use_attribute_docstrings=True, validate_assignment=True)


class AlgorithmSettings(Section):
    """An algorithm's own settings: the configuration table named after it (`[mira]`, `[fedprox]`, ...).
    A subclass that declares `algorithm` is that algorithm's table; the algorithm's module declares it
    beside its code, importing no torch (validating a configuration loads no model code)."""

    algorithm: ClassVar[str]

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs):
        super().__pydantic_init_subclass__(**kwargs)
        if "algorithm" in cls.__dict__:
            SETTINGS[cls.algorithm] = cls

    @staticmethod
    def search_space(trial, cfg: Config, clients=()) -> dict:
        """The local learning rate, log-uniform within 10x of train.lr.

        What `mira tune` searches for the algorithm (this default, or its settings' own), as nested
        config overrides drawn from an Optuna `trial`; `clients` are the federation's, for a space that
        depends on them. The first paragraph of the docstring describes the space in `--help`."""
        return {"train": {"lr": trial.suggest_float("train.lr", cfg.train.lr / 10, cfg.train.lr * 10, log=True)}}

    def check(self, cfg: Config) -> None:
        """Raise ValueError where these settings do not fit the rest of `cfg`, a run of this algorithm."""


SETTINGS: dict[str, type[AlgorithmSettings]] = {}
"""Every algorithm's settings by its name: each AlgorithmSettings subclass that declares `algorithm`."""


def settings_class(algorithm: str) -> type[AlgorithmSettings]:
    """The settings of `algorithm` (AlgorithmSettings itself, with no fields, if it has none)."""
    return algorithm_settings().get(algorithm, AlgorithmSettings)


def describe_search_spaces() -> str:
    """One line per algorithm: what `mira tune` searches for it."""
    from .algorithms import algorithm_names
    return "\n".join(f"  {name}: {' '.join(settings_class(name).search_space.__doc__.split(chr(10) * 2)[0].split())}"
                     for name in sorted(algorithm_names()))


def algorithm_settings() -> dict[str, type[AlgorithmSettings]]:
    """Every algorithm's settings table by name: the built-in algorithms' (from their torch-free
    modules) and any declared since."""
    from .algorithms import import_settings
    import_settings()
    return SETTINGS


class ModelConfig(Section):
    name: str = "smollm2-135m-instruct"
    """Base model: 'smollm2-135m-instruct' (embedded), 'tiny-random' (tests), a hub id, a local
    directory, or a path to a .gguf file."""
    lora_r: int = Field(8, gt=0)
    """LoRA rank r."""
    lora_alpha: float = 16.0
    """LoRA scaling α (the update is scaled by α/r)."""
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    """Dropout on the LoRA input, in [0, 1)."""
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"])
    """Names of the linear layers that get LoRA adapters."""
    prompt_format: Literal["chat", "plain"] = "chat"
    """'chat' (the tokenizer's chat template) or 'plain' (an instruction/response template)."""
    max_length: int = Field(128, gt=0)
    """Tokens per example; prompts are cut from the left first, the response is never dropped."""
    autocast: Literal["bfloat16", "none"] = "none"
    """Forward passes (training and evaluation) under torch.autocast in this dtype: 'none' (float32)
    or 'bfloat16' (weights and adapters stay float32). bfloat16 is about 2x faster on CPUs with
    AVX512-BF16 or AMX and on GPUs, but many times slower on CPUs without them."""
    gradient_checkpointing: bool = False
    """Recompute each layer's activations in the backward pass instead of keeping them: less memory
    per training step (longer sequences, bigger models), about a third more compute."""
    quantization: Literal["4bit", "8bit", "none"] = "none"
    """Load the base model's weights in 8 or 4 bits (bitsandbytes; a CUDA GPU; QLoRA's NF4 for
    '4bit'); adapters stay float32. For hub ids and local model directories, and the embedded model."""


class DataConfig(Section):
    source: Literal["dolly", "natural_instructions", "records", "synthetic"] = "synthetic"
    """'synthetic' (embedded 9-task suite, 3 families), 'natural_instructions' (a directory of task
    files), 'dolly' (Dolly-15k JSONL, or its Hub id) or 'records' (generic JSONL/CSV/Hub dataset)."""
    path: str = ""
    """File, directory or Hugging Face dataset id to read (dolly: defaults to databricks/databricks-dolly-15k)."""
    tasks: list[str] = Field(default_factory=list)
    """Keep only these tasks (NI task names, Dolly categories, values of task_field); empty = all."""
    families: str = ""
    """JSON file mapping task name to family (NI; default family: see ni_family)."""
    ni_family: Literal["category", "source"] = "source"
    """NI: a task's family where data.families does not name it: its source dataset ('source') or
    its first category ('category', the task file's `Categories`)."""
    partition: Literal["dirichlet", "iid", "split", "task"] = "task"
    """'task' (one client per task), 'split' (clients_per_task clients per task), 'dirichlet'
    (num_clients clients, task mix ~ Dirichlet(alpha)) or 'iid' (num_clients clients)."""
    clients_per_task: int = Field(1, gt=0)
    num_clients: int = Field(0, ge=0)
    """Number of clients for 'dirichlet' and 'iid'."""
    alpha: float = Field(0.5, gt=0)
    """Dirichlet concentration: small = each client holds few tasks."""
    num_positive_examples: int = Field(0, ge=0)
    """NI: worked examples from 'Positive Examples' put in every prompt."""
    prompt_field: str = "instruction"
    response_field: str = "response"
    context_field: str = ""
    """records: optional column appended to the prompt as context."""
    task_field: str = ""
    """records: column naming each record's task (empty: the whole file is one task)."""
    train_per_client: int = Field(48, gt=0)
    """Training examples per client (federated clients are data-poor)."""
    train_fraction: float = Field(1.0, gt=0, le=1)
    """At most this share of a client's examples is trained on (the MIRA paper keeps about 20 % of
    each task's training data); train_per_client caps it."""
    test_per_client: int = Field(8, gt=0)
    """Held-out test examples per client (the Quickstart's 8 keep its K² global-loss evaluations within its
    5 minutes; the NI and Dolly configs use 16)."""
    val_per_client: int = Field(8, ge=0)
    """Validation examples per client, taken from its training pool after the training examples
    (disjoint from train and test; on a real dataset the test split does not depend on it, while the
    synthetic suite generates train + validation + test examples a task); 0 = no validation."""


class TrainConfig(Section):
    local_steps: int = Field(8, gt=0)
    """R: optimiser steps per sampled client per round (steps, not epochs)."""
    batch_size: int = Field(4, gt=0)
    """Examples per local step."""
    lr: float = Field(2e-3, gt=0)
    """Local learning rate."""
    optimizer: Literal["adamw", "sgd"] = "adamw"
    """'adamw' or 'sgd' (paper-exact)."""
    weight_decay: float = Field(0.0, ge=0)
    """Decoupled weight decay (adamw) or L2 penalty (sgd)."""
    grad_clip: float = Field(1.0, ge=0)
    """Max global gradient norm per step; 0 disables clipping."""
    persistent_optimizer: bool = False
    """Keep each client's optimiser state across the rounds it is sampled in."""
    group_by_length: bool = False
    """Batch examples of similar length together (less padding computed); the same examples are
    drawn as without it, and the batches stay a function of (seed, client, round)."""
    attention: Literal["auto", "model", "eager"] = "auto"
    """Attention kernel while training: 'model' keeps the model's own (SDPA), 'eager' uses plain
    matrix products, 'auto' uses eager under bfloat16 autocast on CPU (PyTorch's SDPA backward is
    slow there: 1.2-1.3x per step on the NI preset) and the model's own elsewhere. Evaluation and
    generation always use the model's own."""


class FederationConfig(Section):
    algorithm: str = "mira"
    """The federated algorithm, by its registered name (each is a module of mira.algorithms whose
    docstring describes it; choices listed in braces)."""

    @field_validator("algorithm")
    @classmethod
    def _registered(cls, name: str) -> str:
        if name not in (allowed := choices("federation.algorithm")):
            raise ValueError(f"expected one of {sorted(allowed)}, got {name!r}")
        return name

    rounds: int = Field(6, gt=0)
    """Communication rounds."""
    sample_fraction: float = Field(0.34, gt=0, le=1)
    """Fraction of clients sampled per round (at least one); ignored if sample_count > 0."""
    sample_count: int = Field(0, ge=0)
    """Clients sampled per round; 0 = use sample_fraction."""
    max_update_norm: float = Field(0.0, ge=0)
    """Server-side bound on the L2 norm of a client's update θ_new − θ_old (larger ones are scaled
    down); 0 = no bound. Updates with NaN/Inf or a wrong shape are always rejected."""
    clip_to_median: float = Field(0.0, ge=0)
    """Robust aggregation: scale down any update longer than this multiple of the median norm of the
    round's updates (e.g. 2; 0 = off), so a client sending a scaled-up update cannot dominate."""


class EvalConfig(Section):
    eval_every: int = Field(3, gt=0)
    test_sets: bool = True
    """Evaluate on the clients' test sets; false evaluates validation only and never reads them (what
    `mira tune`'s trials do)."""
    batch_size: int = Field(16, gt=0)
    """Examples per evaluation forward pass."""
    global_loss: bool = True
    """Also evaluate each client's model on every other client's test set."""
    global_loss_clients: int = Field(16, ge=0)
    """Most clients in the global loss: with more clients than this, a fixed seeded sample of this many
    is scored, each sampled adapter on every sampled test set (n² evaluations instead of K²; the
    global loss is then reported for the sampled clients only); 0 = every client, whatever K."""
    generate_per_client: int = Field(8, ge=0)
    """Test examples per client answered greedily for ROUGE-L and exact match, at round 0 and at
    the end (0 = off)."""
    max_new_tokens: int = Field(8, gt=0)
    """Longest generated answer, in tokens (the synthetic suite's answers are at most 6; raise it for
    longer ones: the NI config uses 32, Dolly's 48)."""


class FlowerConfig(Section):
    precision: Literal["bfloat16", "float32"] = "float32"
    """Adapters on the wire: 'float32' (exact) or 'bfloat16' (half the bytes; rounds every value)."""
    round_timeout: float = Field(600.0, gt=0)
    """Seconds the server waits for the clients' replies in a round; a client later than that is
    skipped for the round (its adapter stays as it was)."""
    min_replies: int = Field(1, gt=0)
    """Fewest successful client replies a round needs; with fewer the run stops (the last
    checkpoint stays valid: continue with resume)."""
    connect_timeout: float = Field(120.0, gt=0)
    """Seconds the server waits at the start for a node of every partition to answer."""


class PrivacyConfig(Section):
    clip: float = Field(0.0, ge=0)
    """C: what a client releases each round (the update of what it was sent, or its state) is scaled to
    L2 norm at most C before noise is added; 0 = no differential privacy."""
    noise_multiplier: float = Field(0.0, ge=0)
    """σ: Gaussian noise of standard deviation σ·C is added on the client to every released value."""
    delta: float = Field(0.0, ge=0, lt=1)
    """δ of each client's (ε, δ) guarantee; 0 = 1/(the client's number of training examples)."""
    target_epsilon: float = Field(0.0, ge=0)
    """A client whose next release would take its ε past this stops releasing (keeps its adapter); 0 = no limit."""


class Config(Section):
    """The whole configuration: the tables every algorithm shares, and one table of settings per
    algorithm, named after it (`cfg.mira.lam`, `cfg.fedprox.mu`; `cfg.settings` is the run's own)."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, SerializeAsAny[AlgorithmSettings]] = Field(init=False)

    name: str = "default"
    """Run name; results go to <out_dir>/<name>/."""
    out_dir: str = "runs"
    """Directory holding the runs."""
    seed: int = Field(0, ge=0)
    """Seed for data, LoRA initialisation, client sampling, batches and dropout."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """'auto' (CUDA if present), 'cpu' or 'cuda'."""
    checkpoint_every: int = Field(1, ge=0)
    """Write the whole federated state every this many rounds (and after the last); 0 = never."""
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    federation: FederationConfig = Field(default_factory=FederationConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    flower: FlowerConfig = Field(default_factory=FlowerConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name

    @property
    def settings(self) -> AlgorithmSettings:
        """The settings of the run's algorithm (federation.algorithm); an empty table if it has none."""
        return (self.model_extra or {}).get(self.federation.algorithm) or AlgorithmSettings()

    @model_validator(mode="before")
    @classmethod
    def _algorithm_tables(cls, data):
        """Each algorithm's settings table, its defaults where not given; keys that moved to an
        algorithm's table (`federation.lam` → `mira.lam`) are read there, with a note."""
        if not isinstance(data, dict):
            return data
        data = {k: v for k, v in data.items() if k != "__pydantic_extra__"}  # assignment passes the tables twice
        data, tables = migrate(data), algorithm_settings()
        unknown = next((key for key in data if key not in cls.model_fields and key not in tables), None)
        if unknown is not None:
            raise _error("extra_forbidden", (unknown,), data[unknown])
        for name, settings in tables.items():
            table = data.get(name, {})
            if isinstance(table, settings):
                continue
            if not isinstance(table, dict):
                raise _error("dict_type", (name,), table)
            try:
                data[name] = settings.model_validate(table)
            except ValidationError as exc:
                error = exc.errors()[0]
                raise _error(error["type"], (name, *error["loc"]), error.get("input"), error.get("ctx")) from None
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        """What no single field can check: values that depend on each other."""
        data = self.data
        if data.source in ("natural_instructions", "records") and not data.path:
            raise ValueError(f"data.path: required when data.source = '{data.source}'")
        if data.partition in ("dirichlet", "iid") and data.num_clients < 1:
            raise ValueError(f"data.num_clients: required (>= 1) when data.partition = '{data.partition}'")
        self.settings.check(self)
        if (self.privacy.noise_multiplier > 0 or self.privacy.target_epsilon > 0) and self.privacy.clip <= 0:
            raise ValueError("privacy.clip: required (> 0) when privacy.noise_multiplier or privacy.target_epsilon "
                             "is set: noise is scaled to the clipping norm")
        if self.seed >= 2**63:
            raise ValueError(f"seed: must be < 2**63 (a 64-bit signed integer), got {self.seed}")
        if not self.name or "/" in self.name or self.name in {".", ".."}:
            raise ValueError(f"name: must be a plain directory name, got {self.name!r}")
        return self


def _error(kind: str, loc: tuple, given, ctx: dict | None = None) -> ValidationError:
    """A pydantic error of `kind` at key `loc` (how mira reports it: see `_message`)."""
    detail = {"type": kind, "loc": loc, "input": given} | ({"ctx": ctx} if ctx else {})
    return ValidationError.from_exception_data("Config", [detail])


MOVED = {"federation.lam": ("mira.lam",), "federation.eta": ("mira.eta",), "federation.neighbours": ("mira.neighbours",),
         "federation.mu": ("fedprox.mu", "ditto.mu"), "federation.kseed_candidates": ("fedkseed.candidates",),
         "federation.kseed_eps": ("fedkseed.eps",), "federation.kseed_lr": ("fedkseed.lr",),
         "federation.kseed_sampling": ("fedkseed.sampling",), "model.p_tuning_tokens": ("fedptuning.tokens",),
         "model.p_tuning_hidden": ("fedptuning.hidden",), "graph": ("mira.graph",)}
"""Keys of earlier versions and the algorithm tables they now belong to (`federation.mu` served both
FedProx and Ditto); a table (`graph`) moves whole."""


def migrate(data: dict) -> dict:
    """`data` with every key of MOVED at its new place (a FutureWarning says so); a key given both
    ways must agree."""
    flat = flatten(data)
    moved = {old: new for old, new in MOVED.items()
             if old in flat or any(key.startswith(old + ".") for key in flat)}
    if not moved:
        return data
    out = {}
    for key, value in flat.items():
        old = next((o for o in moved if key == o or key.startswith(o + ".")), None)
        for target in moved[old] if old else (key,):
            target += key[len(old):] if old else ""
            if target in flat and old and flat[target] != value:
                raise ConfigError(f"{key} (now {target}) and {target} are both given, with different values")
            out.setdefault(target, value)
    for old, new in moved.items():
        warnings.warn(f"config: '{old}' is now '{' and '.join(new)}' (read as such; rename it)", FutureWarning,
                      stacklevel=2)
    return unflatten(out)


def unflatten(flat: dict) -> dict:
    """Dotted keys as nested tables, the inverse of `flatten`."""
    out: dict = {}
    for key, value in flat.items():
        *tables, name = key.split(".")
        node = out
        for table in tables:
            node = node.setdefault(table, {})
        node[name] = value
    return out


def choices(key: str) -> set[str] | None:
    """The values option `key` may take, if it is a choice (algorithms: those registered)."""
    if key == "federation.algorithm":
        from .algorithms import algorithm_names
        return algorithm_names()
    section, _, name = key.rpartition(".")
    field = _section(section).model_fields.get(name)
    annotation = field.annotation if field is not None else None
    return set(typing.get_args(annotation)) if typing.get_origin(annotation) is Literal else None


def _tables(cls: type[Section]) -> dict[str, type[Section]]:
    """The tables inside table `cls`, by name (in Config: also every algorithm's settings)."""
    tables = {name: f.annotation for name, f in cls.model_fields.items()
              if isinstance(f.annotation, type) and issubclass(f.annotation, Section)}
    return tables | dict(sorted(algorithm_settings().items())) if cls is Config else tables


def _section(name: str) -> type[Section]:
    """The class of table `name` ('' for the top level; 'mira.graph' for a nested one)."""
    cls = Config
    for part in filter(None, name.split(".")):
        cls = _tables(cls)[part]
    return cls


def _sections(prefix: str = "", cls: type[Section] = Config) -> list[tuple[str, type[Section]]]:
    """(prefix, class) of table `cls` and of every table inside it, depth first."""
    return [(prefix, cls)] + [s for name, table in _tables(cls).items() for s in _sections(f"{prefix}{name}.", table)]


def _message(error: dict, source: str) -> str:
    """One pydantic error as mira says it: the key, what was expected, what was given."""
    key, kind, given, ctx = ".".join(map(str, error["loc"])), error["type"], error.get("input"), error.get("ctx", {})
    if kind == "extra_forbidden":
        section = key.rpartition(".")[0]
        where = f" in [{section}]" if section else ""
        cls = _section(section)
        return f"{source}: unknown key '{key}'; valid keys{where}: {', '.join({**cls.model_fields, **_tables(cls)})}"
    if kind == "literal_error":
        return f"{key}: expected one of {sorted(choices(key))}, got {given!r}"
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    if kind in bounds:
        return f"{key}: must be {bounds[kind]} {next(iter(ctx.values()))}, got {given!r}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"{source}: '{key}' must be a table ([{key}])"
    if kind == "value_error":
        return f"{key}: {ctx['error']}" if key else str(ctx["error"])
    expected = {"int_type": "int", "float_type": "float", "string_type": "str", "bool_type": "true or false",
                "list_type": "a list of strings"}.get(kind, error["msg"])
    return f"{key}: expected {expected}, got {given!r} ({type(given).__name__})"


def from_dict(data: dict, source: str = "config") -> Config:
    """Build a Config from nested dicts (as read from TOML) over the defaults, and validate it."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_message(exc.errors()[0], source)) from None


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
    data = migrate(data)
    for item in overrides:  # each source migrated on its own, so an override by an old key still wins
        data = merge(data, migrate(parse_override(item)))
        source = f"{source} + --set"
    return from_dict(data, source=source)


def to_dict(cfg: Config) -> dict:
    return cfg.model_dump()


def config_text(cfg: Config) -> str:
    """The configuration as TOML text (what config.toml holds; `from_dict(tomllib.loads(...))` reads it)."""
    return tomli_w.dumps(to_dict(cfg))


def save_config(cfg: Config, path: Path) -> None:
    path.write_text(config_text(cfg))


def describe_options() -> str:
    """One line per option with its default and documentation, for `--help`."""
    lines = []
    for prefix, cls in _sections():
        for name, f in cls.model_fields.items():
            if name in _tables(cls):
                continue
            key = prefix + name
            allowed = choices(key)
            choice = f" {{{', '.join(sorted(allowed))}}}" if allowed else ""
            doc = " ".join((f.description or "").split())
            lines.append(f"  {key} = {f.get_default(call_default_factory=True)!r}{choice}" + (f"\n      {doc}" if doc else ""))
    return "\n".join(lines)


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
