"""YAML presets: ``paper`` and ``cpu``."""
