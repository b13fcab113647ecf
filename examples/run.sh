#!/usr/bin/env bash
# The README's first command (Set-up), from the project root with ../shared beside it:
# convert, verify, evaluate Keras and ONNX, write resnet8-report/ (--force: rerunnable).
set -euo pipefail
resnet8-onnx run --data-dir ../shared --out resnet8-report --force
