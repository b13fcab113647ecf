"""``python -m resnet8_onnx`` is the ``resnet8-onnx`` command."""

import sys

from resnet8_onnx.cli import main

sys.exit(main())
