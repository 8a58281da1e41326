"""A Flower deployment on one machine: a stock SuperLink and one SuperNode per client on 127.0.0.1,
as separate processes, for trials, tests and benchmarks; insecure, or with TLS and SuperNode
authentication as in production (see the README), where production runs the same commands on
separate machines."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w

FEDERATION = "loopback"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def flower_env(home: Path) -> dict[str, str]:
    """Environment for a Flower process: its own FLWR_HOME, and this Python's scripts first on PATH
    (Flower starts helpers such as flower-superexec by name; a venv need not be activated)."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "FLWR_HOME": str(home), "PATH": path, "PYTHONUNBUFFERED": "1"}


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with code {process.returncode} before listening on {port}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@dataclass
class Loopback:
    """A SuperLink and `num_nodes` SuperNodes (partition-id 0..N-1, plus `node_configs[k]` for node k)
    under `root` (logs, FLWR_HOMEs); with `simulation`, a SuperLink of Flower's Simulation Engine that
    runs `num_nodes` virtual SuperNodes on Ray (needs the `simulation` extra). With `tls` (a folder
    holding ca.crt, server.pem and server.key) every connection is TLS; with `node_keys` as well
    (partition id → SSH-format EC private key, its public key beside it as KEY.pub) SuperNode
    authentication is on and those keys are registered before the nodes start. Use as a context
    manager: every process started is stopped by its PID on exit."""

    root: Path
    num_nodes: int
    node_configs: dict[int, str] = field(default_factory=dict)
    simulation: bool = False
    tls: Path | None = None
    node_keys: dict[int, Path] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def __enter__(self) -> Loopback:
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            security = ["--insecure"]
            if self.tls is not None:
                security = ["--ssl-ca-certfile", str(self.tls / "ca.crt"), "--ssl-certfile", str(self.tls / "server.pem"),
                            "--ssl-keyfile", str(self.tls / "server.key")]
                security += ["--enable-supernode-auth"] if self.node_keys else []
            self._start("superlink", ["flower-superlink", *security, "--host", "127.0.0.1", "--port", str(self.port),
                                      "--disable-runtime-dependency-installation",
                                      *(["--simulation"] if self.simulation else [])], self.root / "superlink")
            _wait_for_port(self.port, self.processes["superlink"], 60)
            self._write_cli_config()
            for key in self.node_keys.values():
                self.register(Path(f"{key}.pub"))
            for k in range(0 if self.simulation else self.num_nodes):
                self.start_node(k, self.node_configs.get(k, ""))
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _start(self, name: str, command: list[str], home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"{name}.log", "ab") as log:
            self.processes[name] = subprocess.Popen(command, env=flower_env(home), stdout=log, stderr=subprocess.STDOUT,
                                                    cwd=home, start_new_session=True)

    def _write_cli_config(self) -> None:
        home = self.root / "cli"
        home.mkdir(exist_ok=True)
        security = f'root-certificates = "{self.tls / "ca.crt"}"' if self.tls is not None else "insecure = true"
        (home / "config.toml").write_text(f'[superlink.{FEDERATION}]\naddress = "127.0.0.1:{self.port}"\n{security}\n')

    def register(self, public_key: Path) -> str:
        """`flwr supernode register` a node's public key with the SuperLink; returns the CLI's output."""
        done = subprocess.run(["flwr", "supernode", "register", str(public_key), FEDERATION], env=flower_env(self.root / "cli"),
                              capture_output=True, text=True, timeout=60)
        if done.returncode != 0 or "registered successfully" not in done.stdout:
            raise RuntimeError(f"registering {public_key} failed: {done.stdout}{done.stderr}")
        return done.stdout

    def start_node(self, k: int, node_config: str = "", key: Path | None = None, root_certificates: bool = True,
                   name: str | None = None) -> None:
        """Start the SuperNode holding partition k (as process `name`, default node<k>): with TLS it
        trusts the test CA unless `root_certificates` is false, and signs in with `key` (default
        node_keys[k], if any)."""
        security = ["--insecure"]
        if self.tls is not None:
            security = ["--root-certificates", str(self.tls / "ca.crt")] if root_certificates else []
            key = key or self.node_keys.get(k)
            security += ["--auth-supernode-private-key", str(key)] if key else []
        name = name or f"node{k}"
        self._start(name, ["flower-supernode", *security, "--superlink", f"127.0.0.1:{self.port}",
                           "--host", "127.0.0.1", "--port", str(free_port()), "--node-config",
                           f"partition-id={k} num-partitions={self.num_nodes} {node_config}".strip()],
                    self.root / name)

    def kill_node(self, k: int) -> None:
        """Kill SuperNode k and its ClientApp processes at once (SIGKILL), as a crash would."""
        process = self.processes.pop(f"node{k}")
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def start_run(self, app_dir: Path, run_config: dict[str, str | bool]) -> subprocess.Popen:
        """Start `flwr run app_dir` on this federation; it streams the run's log until the run ends."""
        home = self.root / "cli"
        pairs = " ".join(f"{k}={_toml(v)}" for k, v in run_config.items())
        engine = (["--federation-config", f"num-supernodes={self.num_nodes} client-resources-num-cpus=1"]
                  if self.simulation else [])
        process = subprocess.Popen(["flwr", "run", str(app_dir), FEDERATION, "--stream", "--run-config", pairs, *engine],
                                   env=flower_env(home), stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.processes[f"run{len(self.processes)}"] = process
        return process

    def run(self, app_dir: Path, run_config: dict[str, str | bool], timeout: float) -> str:
        """`flwr run` to the end; returns its output (the run's log)."""
        process = self.start_run(app_dir, run_config)
        output, _ = process.communicate(timeout=timeout)
        return output

    def stop(self) -> None:
        """SIGTERM every process group started here, SIGKILL what is still alive after 15 s."""
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()


def _toml(value: str | bool) -> str:
    """A run-config value as TOML: a literal string where it can be (Flower's parser of
    `--run-config` pairs does not take escaped quotes), else a basic string."""
    if isinstance(value, str) and "'" not in value:
        return f"'{value}'"
    return tomli_w.dumps({"v": value})[4:].strip()
