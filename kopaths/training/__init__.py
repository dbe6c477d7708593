"""Training utilities: loss, optimiser, sharding, state, checkpointing and data adapters."""
