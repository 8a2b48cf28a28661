"""Models: the registry/store (names -> verified files) and the llama.cpp backend."""

from rlm_local.models.store import ModelStatus, ModelStore, PullOutcome, ResolvedModel

__all__ = ["ModelStatus", "ModelStore", "PullOutcome", "ResolvedModel"]
