"""What a job optimises and looks at: the NeRF field (:mod:`.field`) and its occupancy grid (:mod:`.occupancy`),
cameras and the training views (:mod:`.cameras`), posed-image datasets (:mod:`.datasets`) and the saved engine
state an edit continues from (:mod:`.state`)."""
