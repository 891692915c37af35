"""Small TransformerLens transformers: built from config.yaml, trained, loaded for analysis."""

from hmm_lang.transformer.model import HookedTransformerModel, resolve_device

__all__ = ["HookedTransformerModel", "resolve_device"]
