"""S3D prepared for inference on the CPU: the same function, in fewer passes over memory.

Measured on a 2-core AVX2 machine (bench/extract.py, 15x112x112 clips, fp32, 2 threads):
torchvision's S3D runs at 6.2 clips/s in the default contiguous layout and 11.8 clips/s in the
channels-last 3-D layout (oneDNN's blocked convolutions read it without reordering); there, one
pass in nine is a batch norm of its own. :func:`for_cpu` returns a copy in the channels-last
layout in which each ``Conv3d → BatchNorm3d → ReLU`` block is one convolution — the eval-mode batch
norm folded into its weights and a bias — and its in-place ReLU: 14.6 clips/s.

The result equals the original up to floating-point rounding (folding changes the order of a few
multiplications); ``tests/test_extract.py`` bounds the difference. GPUs keep the original network.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def fold_batch_norm(block: nn.Sequential) -> nn.Sequential:
    """``Conv3d → BatchNorm3d (eval) → activation`` as ``Conv3d (with bias) → activation``."""
    conv, norm, *activation = block
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    folded = nn.Conv3d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                       conv.dilation, conv.groups, bias=True)
    with torch.no_grad():
        folded.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1, 1))
        bias = norm.bias - norm.running_mean * scale
        folded.bias.copy_(bias + conv.bias * scale if conv.bias is not None else bias)
    return nn.Sequential(folded, *activation)


def for_cpu(model: nn.Module) -> nn.Module:
    """A copy of torchvision's S3D (in eval mode) prepared for CPU inference (module docstring);
    its input must be in the channels-last 3-D layout to run at full speed."""
    model = copy.deepcopy(model).eval()

    def rewrite(module: nn.Module) -> None:
        for name, child in module.named_children():
            # torchvision's Conv3dNormActivation blocks: Conv3d, BatchNorm3d, activation
            if (isinstance(child, nn.Sequential) and len(child) >= 2 and isinstance(child[0], nn.Conv3d)
                    and isinstance(child[1], nn.BatchNorm3d)):
                setattr(module, name, fold_batch_norm(child))
            else:
                rewrite(child)

    rewrite(model)
    return model.requires_grad_(False).to(memory_format=torch.channels_last_3d)
