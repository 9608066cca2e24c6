"""Many jobs at once: ``python -m dreamsmith batch``.

The jobs of a file (:mod:`.jobs_file`) run one after another in this process, or as tasks on a Ray cluster
(:mod:`.ray_pool`, the optional ``cluster`` extra); either way each job runs through :mod:`.execute` (inputs sent as
bytes, results returned as bytes, priors kept loaded between jobs), and the driver (:mod:`.command`) writes the
results and ``manifest.jsonl`` (:mod:`.manifest`), which makes a rerun resume.
"""
