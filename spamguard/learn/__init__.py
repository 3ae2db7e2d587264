"""Learning: labelled corpora, fitting and warm-starting heads, the version registry, the one
labelling path, the retraining loop and the adaptation harness."""
