"""Redis for the pipeline: redis-py's private internals (``_internals``), touched only there."""
