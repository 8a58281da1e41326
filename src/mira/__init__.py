"""mira: federated multi-task fine-tuning of LLMs with LoRA (MIRA and its baselines).

The names below are imported on first use (PEP 562), so `import mira.<module>` loads only what that
module needs (a Flower node answering a query message loads no model code).
"""

import importlib

__version__ = "0.1.0"
_EXPORTS = {name: "algorithms" for name in ("ALGORITHMS", "Algorithm", "Ditto", "FedIT", "FedKSeed", "FedPTuning",
                                            "FedProx", "FedSALoRA", "FFALoRA", "Local", "Mira", "build_algorithm",
                                            "laplacian_step")}
_EXPORTS |= {"AlgorithmSettings": "config", "Config": "config", "ConfigError": "config", "load_config": "config",
             "family_graph": "graph", "laplacian": "graph", "uniform_graph": "graph", "validate_graph": "graph",
             "epsilon": "privacy", "run": "api", "Run": "api", "client_data": "api", "compare": "api", "tune": "api",
             "Tuning": "api", "report": "api", "Comparison": "reporting", "Callback": "callbacks",
             "ClientData": "data", "MiraError": "errors"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mira' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
