"""Training: data pipelines, checkpoints, logs, and the pre-training loop."""
