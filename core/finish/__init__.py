"""A surface made ready for work: UV unwrapping and texture baking (:mod:`.bake`), the face budget
(:mod:`.decimate`), levels of detail (:mod:`.levels`) and the normal map of the detail a budget removed
(:mod:`.normal_map`)."""
