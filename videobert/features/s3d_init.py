"""Seeded initialisation of S3D for runs without pretrained weights.

torchvision's default initialisation shrinks activations layer after layer (clip features come out
with norms near 1e-5, which float16 storage flattens into subnormals) and its filters are blind to
the direction of motion, so clip features from it say little beyond "which colours are on screen".
Without ``--s3d-weights`` the extract stage uses this initialisation instead. It is deterministic for a
seed (reruns, resumed runs and every rank get the same network) and keeps information:

* the stem — a 1×7×7 spatial then a 7×1×1 temporal convolution — is a fixed bank of the filters
  that trained video networks learn first (Adelson & Bergen's motion energy model): luminance
  Gabor filters in quadrature pairs at 4 orientations and 2 wavelengths, combined over time into
  units tuned to one direction of motion, beside colour-opponent channels with a sustained
  temporal response;
* every deeper convolution starts near the identity — a Dirac delta (each output channel copies
  one input channel) plus He-normal noise at ``DEEP_NOISE`` of its usual scale — and every batch
  norm is the identity. Activations therefore keep their scale through all layers (no float16
  underflow), and what the stem measures (direction of motion, colour) reaches the pooled feature
  instead of being scrambled by twenty random layers, while the noise adds random mixtures.

It is a stand-in that makes the pipeline runnable and testable end to end; real work uses the
Kinetics-400 weights (``--s3d-weights``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

STEM_WAVELENGTHS = (4.0, 7.0)  # pixels of the input frame
STEM_ORIENTATIONS = 4
STEM_SIGMA = 2.0  # Gaussian envelope of the 7×7 Gabor filters, pixels
TEMPORAL_PERIOD = 6.0  # frames per cycle of the temporal quadrature pair
MOTION_GAIN = 3.0  # balances motion against colour channels after the stem
COLOUR_GAIN = 1.5
DEEP_NOISE = 0.3  # He-normal noise added to the identity of deeper convolutions, relative to its scale


def _gabor(size: int, wavelength: float, theta: float, phase: float) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    y, x = torch.meshgrid(r, r, indexing="ij")
    along = x * math.cos(theta) + y * math.sin(theta)
    envelope = torch.exp(-(x**2 + y**2) / (2 * STEM_SIGMA**2))
    return envelope * torch.cos(2 * math.pi * along / wavelength + phase)


def _temporal_pair(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    envelope = torch.exp(-(t**2) / 8)
    even = envelope * torch.cos(2 * math.pi * t / TEMPORAL_PERIOD)
    even = even - even.mean()
    odd = envelope * torch.sin(2 * math.pi * t / TEMPORAL_PERIOD)
    return even / even.norm(), odd / odd.norm()


@torch.no_grad()
def init_stem(spatial: nn.Conv3d, temporal: nn.Conv3d, generator: torch.Generator) -> None:
    """Motion-energy and colour filters in S3D's first separable convolution.

    ``spatial``: Conv3d(3, C, (1, k, k)); ``temporal``: Conv3d(C, C, (kt, 1, 1)), C >= 64.
    The first 32 spatial channels are Gabor filters (2 wavelengths x 4 orientations x ±even, ±odd:
    the ± copies carry the sign through the ReLU between the two convolutions). The first 32
    temporal units each combine one quadrature set into a single direction of motion —
    even_space·even_time ± odd_space·odd_time — in two temporal phases. The remaining spatial
    channels are colour-opponent blobs (random colour directions from ``generator``) and the
    remaining temporal units average them over time.
    """
    channels = spatial.out_channels
    size = spatial.kernel_size[-1]
    time_size = temporal.kernel_size[0]
    spatial.weight.zero_()
    temporal.weight.zero_()

    luminance = torch.ones(3, dtype=torch.float64) / math.sqrt(3)
    quads = []
    channel = 0
    for wavelength in STEM_WAVELENGTHS:
        for k in range(STEM_ORIENTATIONS):
            theta = k * math.pi / STEM_ORIENTATIONS
            even = _gabor(size, wavelength, theta, 0.0)
            even = even - even.mean()  # no response to flat regions
            odd = _gabor(size, wavelength, theta, math.pi / 2)
            even, odd = even / even.norm(), odd / odd.norm()
            members = []
            for kernel in (even, -even, odd, -odd):
                spatial.weight[channel, :, 0] = (luminance[:, None, None] * kernel * 3 * math.sqrt(2)).float()
                members.append(channel)
                channel += 1
            quads.append(members)
    motion_channels = channel

    centre = (size - 1) / 2
    r = torch.arange(size, dtype=torch.float64) - centre
    blob = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / 8)
    blob = blob / blob.sum()
    while channel < channels:
        direction = torch.randn(3, generator=generator, dtype=torch.float64)
        direction = direction / direction.norm()
        spatial.weight[channel, :, 0] = (direction[:, None, None] * blob * 6).float()
        channel += 1

    t_even, t_odd = _temporal_pair(time_size)
    unit = 0
    for plus_even, minus_even, plus_odd, minus_odd in quads:
        for direction in (1.0, -1.0):
            for first, second in ((t_even, t_odd), (t_odd, -t_even)):
                w = temporal.weight[unit, :, :, 0, 0]
                w[plus_even] = (first * MOTION_GAIN).float()
                w[minus_even] = (-first * MOTION_GAIN).float()
                w[plus_odd] = (direction * second * MOTION_GAIN).float()
                w[minus_odd] = (-direction * second * MOTION_GAIN).float()
                unit += 1
    sustained = torch.full((time_size,), 1 / math.sqrt(time_size), dtype=torch.float64)
    source = motion_channels
    while unit < temporal.out_channels:
        temporal.weight[unit, source, :, 0, 0] = (sustained * COLOUR_GAIN).float()
        unit += 1
        source = motion_channels + (source + 1 - motion_channels) % (channels - motion_channels)


@torch.no_grad()
def random_init_s3d(model: nn.Module, seed: int) -> None:
    """Re-initialise a torchvision S3D in place (see the module docstring); deterministic in ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.Conv3d):
            fan_in = module.in_channels // module.groups * math.prod(module.kernel_size)
            noise = torch.randn(module.weight.shape, generator=generator) * math.sqrt(2.0 / fan_in)
            identity = torch.zeros_like(module.weight)
            nn.init.dirac_(identity, groups=module.groups)
            module.weight.copy_(identity + DEEP_NOISE * noise)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.BatchNorm3d):
            module.reset_running_stats()
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    stem = model.features[0]
    init_stem(stem[0][0], stem[1][0], generator)
