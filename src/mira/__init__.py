"""mira: federated multi-task fine-tuning of LLMs with LoRA (MIRA and its baselines)."""

from .algorithms import FedIT, Local, Mira, build_algorithm, laplacian_step
from .config import Config, ConfigError, load_config
from .graph import family_graph, laplacian, uniform_graph, validate_graph

__version__ = "0.1.0"
__all__ = ["Config", "ConfigError", "FedIT", "Local", "Mira", "build_algorithm", "family_graph",
           "laplacian", "laplacian_step", "load_config", "uniform_graph", "validate_graph"]
