"""The diffusion priors: which one and where it is (:mod:`.hub`), loading it (:mod:`.models`), the models on this
machine (:mod:`.model_store`) and the prompt's view-dependent embeddings (:mod:`.prompts`)."""
