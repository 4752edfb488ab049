"""K-fold training from a config: the fold trainer (prepare, restore, epoch, evaluate, checkpoint) and lr-find.
Training never imports prediction: the pipeline calls both."""
