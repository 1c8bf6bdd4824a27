"""Teach a classifier your own things on the device: a numpy head on a shipped feature extractor,
written into one model file the runtime opens like any other (``edge-classify teach``)."""
