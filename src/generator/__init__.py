"""The generator: serves the WebUI and control API, writes test keys, reports progress."""
