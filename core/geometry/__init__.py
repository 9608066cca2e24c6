"""Surfaces: the tetrahedral grid and its differentiable iso-surface (:mod:`.tetgrid`, :mod:`.dmtet`), mesh
operations and regularisers (:mod:`.mesh_ops`) and distances between surfaces (:mod:`.metrics`)."""
