"""Image to 3D's picture: reading it (:mod:`.load`: mask, centre, reference camera), its reading as words
(:mod:`.caption`) or a text condition learned from it (:mod:`.inversion`), the turn it was seen from and its
camera (:mod:`.condition`), and the reference view's losses that the stages take as objectives
(:mod:`.reference_view`)."""
