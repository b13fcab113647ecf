#!/usr/bin/env bash
# The docs' typical workflow (docs/workflow.md), from the project root with ../shared beside
# it: convert → verify → evaluate → quantize → compare; --force lets a second run replace
# the first run's files.
set -euo pipefail
resnet8-onnx convert ../shared/models/pretrainedResnet.h5 -o r8.onnx --force
resnet8-onnx verify ../shared/models/pretrainedResnet.h5 r8.onnx --data-dir ../shared
resnet8-onnx evaluate r8.onnx --data-dir ../shared --out r8-report --force
resnet8-onnx quantize r8.onnx -o r8_int8.onnx --calibration-data ../shared/cifar-10/train-2000-png \
    --data-dir ../shared --out int8-report --force
resnet8-onnx compare ../shared/models/pretrainedResnet.h5 r8.onnx r8_int8.onnx \
    --data-dir ../shared --out compare-report --force
