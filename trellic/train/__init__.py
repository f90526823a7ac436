"""Training: crop datasets, the rate-distortion loss, the loop with checkpoints and resume."""
