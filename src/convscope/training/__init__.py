"""Training: config, loop, checkpoints, the run folder."""
