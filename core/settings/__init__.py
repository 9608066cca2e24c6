"""Configs as typed dataclasses: reading and merging them (:mod:`.config`), the quality presets
(:mod:`.presets`) and the configuration reference written from their docstrings (:mod:`.config_docs`)."""
