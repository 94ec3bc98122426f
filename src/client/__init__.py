"""``expiry-pipeline``: a command-line client for the generator's control API."""
