"""Conversion: Keras runs -> TFLite and ONNX files, verified against Keras and self-describing."""

# Marks the toolkit's own package for the console-script launchers (edge_common/tooling.py).
EDGE_CLASSIFY_TOOLING = True
