"""What every job runs with: the device and its seeded generator (:mod:`.device`), the cost estimate before any work
(:mod:`.estimate`), progress events and cancellation (:mod:`.events`) and the engine's errors (:mod:`.errors`)."""
