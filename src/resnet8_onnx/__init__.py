"""resnet8-onnx: convert a Keras image classifier to ONNX and prove the conversion lost nothing.

The package is a library first; ``resnet8_onnx.cli`` is a thin layer over it. Stages live in
their own modules (data → backends → evaluate → metrics → report; convert and verify beside
them) and heavy frameworks (TensorFlow, tf2onnx) are imported lazily by the stages that need
them, so evaluating an ONNX model never pays for TensorFlow. The module map and the import layers
are written once, in docs/architecture.md.
"""

__version__ = "0.1.0"
