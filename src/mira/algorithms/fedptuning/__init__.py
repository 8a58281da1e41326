"""FedPTuning (P-tuning v1, Liu et al., 2021, federated as in the FedKSeed and MIRA papers): every
client trains P-tuning's virtual tokens and their prompt encoder (PEFT's PromptEncoderConfig) over the
frozen model, and the server averages them like FedIT; every client gets the average."""

from __future__ import annotations

from pydantic import Field

from ...config import AlgorithmSettings


class FedPTuningSettings(AlgorithmSettings):
    """FedPTuning's settings (the `[fedptuning]` table)."""

    algorithm = "fedptuning"
    tokens: int = Field(20, gt=0)
    """Virtual tokens P-tuning puts before every prompt."""
    hidden: int = Field(128, gt=0)
    """Hidden size of P-tuning's prompt encoder (an MLP)."""
