#!/usr/bin/env bash
# The README's "Any ONNX image classifier" examples, from the project root with ../shared
# beside it. cifar10_resnet.onnx stands for your PyTorch export (NCHW, ToTensor + Normalize);
# here it is made from the MLCommons model so the commands run as written.
set -euo pipefail
resnet8-onnx convert ../shared/models/pretrainedResnet.h5 -o r8.onnx --force
python examples/pytorch_style.py r8.onnx cifar10_resnet.onnx    # or your torch.onnx.export
resnet8-onnx evaluate cifar10_resnet.onnx --data-dir ../shared \
    --scale 1/255 --mean 0.4914,0.4822,0.4465 --std 0.2470,0.2435,0.2616
resnet8-onnx annotate cifar10_resnet.onnx -o annotated.onnx --scale 1/255 \
    --mean 0.4914,0.4822,0.4465 --std 0.2470,0.2435,0.2616 --force   # later: no flags needed
resnet8-onnx compare ../shared/models/pretrainedResnet.h5 cifar10_resnet.onnx --data-dir ../shared \
    --layout nhwc --layout nchw --scale - --scale 1/255 \
    --mean - --mean 0.4914,0.4822,0.4465 --std - --std 0.2470,0.2435,0.2616
