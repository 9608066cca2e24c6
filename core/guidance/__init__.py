"""Guidance: what the renders are optimised against: posed reference images (:mod:`.reference`) or a diffusion prior
by score distillation (:mod:`.sds`, with :mod:`.camera` for priors that take the camera)."""
