"""Training: the model registry, datasets, and reproducible, resumable training runs.

Heavy imports (TensorFlow, Keras, matplotlib) happen only inside the functions that need them.
"""

# Marks the toolkit's own package for the console-script launchers (edge_common/tooling.py).
EDGE_CLASSIFY_TOOLING = True
