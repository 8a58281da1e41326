"""FedPTuning (P-tuning v1, Liu et al., 2021, federated as in the FedKSeed and MIRA papers): every
client trains P-tuning's virtual tokens and their prompt encoder (PEFT's PromptEncoderConfig) over the
frozen model, and the server averages them like FedIT; every client gets the average."""

from __future__ import annotations

from .fedit import FedIT


class FedPTuning(FedIT):
    name = "fedptuning"
    adapter = "p_tuning"
