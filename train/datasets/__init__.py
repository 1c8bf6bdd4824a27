"""Datasets for training and evaluation: Fashion-MNIST (IDX), image folders, camera scenes.

Only numpy and OpenCV are needed here, so conversion checks and device benchmarks can read
the same data without TensorFlow.
"""
