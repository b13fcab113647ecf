#!/usr/bin/env bash
# The README's PyTorch examples (needs the torch extra), from the project root with ../shared
# beside it; --force lets a second run replace the first run's files.
set -euo pipefail
resnet8-onnx convert ../shared/models/pretrainedResnet.h5 -o r8.pt2 --force    # native builder
resnet8-onnx verify ../shared/models/pretrainedResnet.h5 r8.pt2 --data-dir ../shared
resnet8-onnx evaluate r8.pt2 --data-dir ../shared                                # 87.19 %
resnet8-onnx convert r8.pt2 -o back.onnx --force                                 # and back
resnet8-onnx convert ../shared/models/pretrainedResnet.h5 -o r8.onnx --force     # tf2onnx
resnet8-onnx compare ../shared/models/pretrainedResnet.h5 r8.onnx r8.pt2 --data-dir ../shared
