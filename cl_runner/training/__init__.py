"""The training loop, evaluation and optimizers."""
