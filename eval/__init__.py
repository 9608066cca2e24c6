"""What the tests and the scripts share to judge results: analytic test objects and their datasets
(:mod:`.synth_objects`), the toy prior's shapes and renders (:mod:`.toy_prior_data`), priors with the real models'
structure and random weights (:mod:`.random_priors`), the shape judge (:mod:`.shapes`), the image sweep's pictures
(:mod:`.pictures`) and the package's import graph (:mod:`.import_graph`). No bpy; not shipped in the Blender
extension."""
