"""The Python API: run a federation from code, with your own clients' data or an already loaded model,
and get the results as a `Run` (a pandas history, PEFT adapters, a model ready to generate).

    import mira
    run = mira.run({"model": {"name": "tiny-random"}, "federation": {"rounds": 2}},
                   clients={"qa": {"train": [{"prompt": "2+2?", "response": "4"}, ...], "test": [...]}})
    run.history            # one row per round and client
    print(run.summary())
    run.model("qa")        # the shared PEFT model with client qa's adapter loaded
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from .callbacks import Callback
from .config import Config, ConfigError, from_dict, load_config, save_config
from .data import ClientData, Example
from .errors import MiraError
from .results import MetricsWriter, summary_table, write_clients


def as_config(config: Config | Mapping | str | Path | None) -> Config:
    """A `Config` from a `Config` (copied), a dict of its tables, a TOML path, or None (the defaults)."""
    if config is None or isinstance(config, str | Path):
        return load_config(config)
    if isinstance(config, Config):
        return config.model_copy(deep=True)
    return from_dict(dict(config), "mira.run(config=...)")


def _examples(records, where: str) -> list[Example]:
    out = []
    for i, record in enumerate(records or []):
        if isinstance(record, Example):
            out.append(record)
            continue
        if not isinstance(record, Mapping) or not isinstance(record.get("prompt"), str) \
                or not isinstance(record.get("response"), str):
            raise ConfigError(f"clients: {where} record {i}: expected {{'prompt': str, 'response': str}}, got {record!r:.80}")
        references = tuple(record.get("references", ())) or (record["response"],)
        out.append(Example(record["prompt"], record["response"], references))
    return out


def client_data(clients: Mapping | Sequence[ClientData]) -> list[ClientData]:
    """Clients from a mapping of client name to {'train': records, 'test': records, 'val': records
    (optional), 'family': str (optional)}, a record being {'prompt': ..., 'response': ...}; or a list of
    `ClientData` as it is."""
    if not isinstance(clients, Mapping):
        return list(clients)
    out = []
    for name, parts in clients.items():
        if isinstance(parts, ClientData):
            out.append(parts)
            continue
        train, test = _examples(parts.get("train"), f"{name}.train"), _examples(parts.get("test"), f"{name}.test")
        if not train or not test:
            raise ConfigError(f"clients: {name} needs at least one 'train' and one 'test' record")
        out.append(ClientData(str(name), str(parts.get("family", name)), train, test, {str(name): len(train)},
                              _examples(parts.get("val"), f"{name}.val")))
    return out


class Run:
    """A finished federation: its configuration, clients, per-round records and every client's final
    (and validation-selected) adapter, with the workspace's model to use them."""

    def __init__(self, cfg: Config, result, workspace, run_dir: Path | None):
        self.config, self.clients, self.records = cfg, result.clients, result.history
        self.thetas, self._selection = result.thetas, result.selection
        self.selected_thetas = result.selection.thetas if result.selection.active else None
        self.run_dir = run_dir
        """The run directory, or None for a run made with out_dir=None (nothing kept on disk)."""
        self._workspace = workspace

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.clients]

    @property
    def history(self):
        """A pandas DataFrame, one row per round and client: whether it was sampled, its training,
        validation, local and global loss, ROUGE-L and exact match where evaluated, its privacy ε, and
        the round's traffic and timings."""
        import pandas as pd

        per_client = [*MetricsWriter.METRICS, "epsilon"]
        per_round = ("bytes_down", "bytes_up", "bytes_state", "train_seconds", "eval_seconds", "generate_seconds",
                     "checkpoint_seconds", "wall_seconds")
        rows = [{"round": r["round"], "client": c.name, "family": c.family, "sampled": c.name in r.get("sampled", ()),
                 **{key: r.get(key, {}).get(c.name) for key in per_client},
                 **{key: r.get(key) for key in per_round}}
                for r in self.records for c in self.clients]
        return pd.DataFrame(rows).dropna(axis="columns", how="all")

    def summary(self) -> str:
        """The per-client table `mira run` prints (local loss at round 0 and the end, global loss, ...)."""
        return summary_table(self.records, self.clients)

    def _index(self, client: str | int) -> int:
        if isinstance(client, int) and 0 <= client < len(self.clients):
            return client
        if client in self.names:
            return self.names.index(client)
        raise KeyError(f"no client {client!r}; clients: {', '.join(self.names)}")

    def _theta(self, client, selected: bool) -> torch.Tensor:
        if selected and self.selected_thetas is None:
            raise MiraError("no selected adapters: the run had no validation data (data.val_per_client = 0)")
        return (self.selected_thetas if selected else self.thetas)[self._index(client)]

    def adapter(self, client: str | int, selected: bool = False) -> dict[str, torch.Tensor]:
        """Client `client`'s final adapter (or its validation-selected one) as a PEFT state dict."""
        return self._workspace.slot.layout.unflatten(self._theta(client, selected))

    def model(self, client: str | int, selected: bool = False):
        """The run's PEFT model with client `client`'s adapter loaded, ready for `generate` (one model is
        shared by all clients: asking for another client's swaps its adapter in)."""
        self._workspace.slot.set(self._theta(client, selected))
        return self._workspace.model

    @property
    def tokenizer(self):
        return self._workspace.tokenizer

    def save(self, path: str | Path) -> Path:
        """Write the run as a run directory at `path` (config.toml, clients.json, metrics.jsonl/csv,
        adapters/, adapters/selected/): what `mira report`, `mira export` and `mira generate` read."""
        from .rounds import save_adapters

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_config(self.config.model_copy(update={"out_dir": str(path.parent), "name": path.name}),
                    path / "config.toml")
        write_clients(path, self.clients)
        MetricsWriter(path, self.clients, self.records)
        save_adapters(path, self.clients, self.thetas, self._workspace.slot.layout, self._selection)
        return path


def run(config: Config | Mapping | str | Path | None = None, *, clients: Mapping | Sequence[ClientData] | None = None,
        model: tuple | None = None, callbacks: Sequence[Callback] = (), out_dir: str | Path | None = None,
        progress: bool = False) -> Run:
    """Run a federation in this process (the simulator) and return it as a `Run`.

    `config`: a `Config`, a dict of its tables, a TOML path, or None for the defaults. `clients`: your
    own clients (see `client_data`) instead of cfg.data's. `model`: an already loaded Hugging Face causal
    LM and its tokenizer, `(model, tokenizer)`, instead of model.name (the adapter is attached to it in
    place). `callbacks`: `Callback`s. `out_dir`: where the run directory <out_dir>/<name>/ goes; None
    runs in a temporary folder that is removed afterwards (nothing stays on disk; `Run.save` writes it).
    """
    from .client import build_workspace
    from .simulation import run as simulate

    cfg = as_config(config)
    temporary = tempfile.TemporaryDirectory(prefix="mira-run-") if out_dir is None else None
    cfg.out_dir = temporary.name if temporary else str(out_dir)
    try:
        workspace = build_workspace(cfg, None if clients is None else client_data(clients), base=model)
        result = simulate(cfg, progress=progress, ws=workspace, callbacks=callbacks)
    finally:
        if temporary:
            temporary.cleanup()
    return Run(cfg, result, workspace, None if temporary else result.run_dir)


def compare(config: Config | Mapping | str | Path | None, algorithms: Sequence[str], seeds: Sequence[int] = (0,), *,
            params: Mapping | str | Path | None = None, restart: bool = False, progress: bool = False):
    """Run every algorithm variant ('mira', 'mira@ground_truth', 'fedit', ...) for every seed on the same
    clients, initial adapters and batches into <out_dir>/<name>/, write its report there, and return it
    as a `mira.reporting.Comparison` (tables as DataFrames, `plot()`). `params`: each variant's settings
    (a dict of variant to nested overrides, or a best_params.toml of `mira tune`). A finished sub-run is
    kept, so calling it again continues an interrupted comparison; one started with other settings is an
    error, or with `restart` trained afresh."""
    from .comparison import compare as run_comparison
    from .comparison import read_params

    variants = list(algorithms)
    if isinstance(params, str | Path):
        params = read_params(params, variants)
    out = run_comparison(as_config(config), variants, list(seeds), progress=progress, params=dict(params or {}),
                         restart=restart)
    return report(out)


class Tuning:
    """A finished `mira tune` search: its folder, each variant's Optuna study and best settings."""

    def __init__(self, path: str | Path, variants: Sequence[str]):
        import optuna

        from .comparison import read_params
        from .results import label
        from .tuning import BEST_PARAMS, STUDY_DB, _storage

        self.path = Path(path)
        storage = _storage(self.path / STUDY_DB)
        self.studies = {spec: optuna.load_study(study_name=label(spec), storage=storage) for spec in variants}
        """Each variant's Optuna study (every trial, its parameters, values and state)."""
        self.best_params = read_params(self.path / BEST_PARAMS, list(variants))
        """Each variant's best settings, as nested config overrides (what `mira.compare(params=...)` takes)."""


def tune(config: Config | Mapping | str | Path | None, algorithms: Sequence[str], trials: int = 4, *, seed: int = 0,
         progress: bool = False) -> Tuning:
    """Search each algorithm variant's hyper-parameters (its settings' search space) on validation loss only,
    `trials` Optuna trials each, into <out_dir>/<name>/ (study.db, trials.md, best_params.toml); calling it
    again continues an interrupted search. Returns the studies and the best settings."""
    from .tuning import tune as run_search

    variants = list(algorithms)
    return Tuning(run_search(as_config(config), variants, trials, seed, progress=progress), variants)


def report(path: str | Path):
    """Write the report (results.md, results.csv, plots) of the comparison folder `path` from its saved
    metrics, and return it as a `mira.reporting.Comparison`."""
    from .reporting import Comparison

    comparison = Comparison(path)
    comparison.write()
    return comparison
