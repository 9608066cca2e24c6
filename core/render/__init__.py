"""Rendering: volume rendering of the coarse field, rasterised meshes, the one shading model both use, and the
preview images (live rows while a stage trains, the contact sheet of a finished mesh)."""
