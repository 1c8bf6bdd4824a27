"""Benchmarks: latency against accuracy for every model and format, and the camera pipeline end to end."""
