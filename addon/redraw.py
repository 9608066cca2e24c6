"""Asking Blender to redraw what shows the add-on's progress (timers run outside any area, so they must ask)."""

import bpy


def redraw(area_type: str = "") -> None:
    """Tag the areas of every window for redraw: those of ``area_type`` (e.g. ``VIEW_3D``), or all when empty."""
    wm = bpy.context.window_manager
    for window in (wm.windows if wm is not None else ()):
        for area in window.screen.areas:
            if not area_type or area.type == area_type:
                area.tag_redraw()
