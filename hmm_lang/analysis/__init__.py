"""Weight and activation analysis: pure functions of tensors (figures in hmm_lang.plots)."""
