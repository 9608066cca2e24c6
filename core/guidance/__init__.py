"""Guidance: what the renders are optimised against (posed reference images, diffusion priors).

Guidance classes are chosen by name from :data:`GUIDANCE` (``"reference"``, ``"sds"``).
"""

from ..registry import Registry

GUIDANCE = Registry("guidance")

# Importing the modules registers their classes (both are light: diffusers loads only with a model).
from . import reference, sds  # noqa: E402

__all__ = ["GUIDANCE", "reference", "sds"]
