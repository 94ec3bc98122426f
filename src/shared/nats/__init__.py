"""NATS for the pipeline: nats-py's private internals (``_internals``), touched only there."""
