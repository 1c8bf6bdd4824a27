"""Training: the model registry, datasets, and reproducible, resumable training runs.

Heavy imports (TensorFlow, Keras, matplotlib) happen only inside the functions that need them.
"""
