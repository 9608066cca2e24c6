"""The ways into the engine: the command line (:mod:`.cli`, :mod:`.estimate_cli`), the worker the Blender add-on
talks to over a pipe (:mod:`.worker`) and batches of jobs, one by one or on a Ray cluster (:mod:`.batch`)."""
