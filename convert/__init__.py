"""Conversion: Keras runs -> TFLite and ONNX files, verified against Keras and self-describing."""
