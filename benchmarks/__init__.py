"""Benchmarks: latency against accuracy for every model and format, and the camera pipeline end to end."""

# Marks the toolkit's own package for the console-script launchers (edge_common/tooling.py).
EDGE_CLASSIFY_TOOLING = True
