"""Quality presets: overrides merged over the config defaults. The one place presets live."""

from __future__ import annotations

from typing import Any

from .config import merge
from .errors import ConfigError

# draft: CPU-capable (small grids and renders, few steps); standard: one consumer GPU; high: more of everything.
RECONSTRUCT_PRESETS: dict[str, dict[str, Any]] = {
    "draft": {
        "coarse": {
            "steps": 700,
            "rays_per_step": 4096,
            "field": {"grid": {"n_levels": 8, "log2_hashmap_size": 15, "base_resolution": 16,
                               "finest_resolution": 256}},
            "occupancy": {"resolution": 64},
        },
        "mesh": {"steps": 300, "render_size": 128, "views_per_step": 2, "dmtet": {"resolution": 64}},
        "bake": {"texture_size": 512},
    },
    "standard": {
        "coarse": {"steps": 3000, "rays_per_step": 8192, "occupancy": {"resolution": 128}},
        "mesh": {"steps": 1000, "render_size": 512, "views_per_step": 4, "dmtet": {"resolution": 128}},
        "bake": {"texture_size": 1024},
    },
    "high": {
        "coarse": {"steps": 6000, "rays_per_step": 16384, "occupancy": {"resolution": 128}},
        "mesh": {"steps": 3000, "render_size": 512, "views_per_step": 8, "dmtet": {"resolution": 192}},
        "bake": {"texture_size": 2048},
    },
}


def preset_overrides(table: dict[str, dict[str, Any]], name: str, extra: dict[str, Any] | None = None) -> dict:
    """The overrides of preset ``name`` with ``extra`` merged on top; an unknown name is a ConfigError."""
    if name not in table:
        raise ConfigError(f"Unknown preset {name!r}; choose one of: {', '.join(table)}.")
    return merge(table[name], extra or {})
