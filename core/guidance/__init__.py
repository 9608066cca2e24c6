"""Guidance: what the renders are optimised against (posed reference images, diffusion priors)."""
