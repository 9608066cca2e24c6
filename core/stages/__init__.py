"""The optimisation stages: the coarse NeRF and the mesh (DMTet) stage, each one loop (:func:`.loop.run_steps`)
over an objective (posed images or score distillation, :mod:`.objectives`), and the coarse-to-mesh step
(:mod:`.surface`)."""
