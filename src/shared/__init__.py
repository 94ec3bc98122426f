"""Pieces shared by the generator and the consumers: names, configuration, scripts, bridge."""
