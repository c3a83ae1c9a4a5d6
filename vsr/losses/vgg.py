"""SRGAN's perceptual loss (Ledig et al. 2017): MSE between ImageNet VGG19 feature maps, from torchvision's file."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vsr.errors import VsrError

__all__ = ["VGG19_FILE", "VGG19_LAYERS", "default_vgg_weights", "PerceptualLoss"]

# torchvision's ImageNet VGG19 (IMAGENET1K_V1) as the hub caches it.
VGG19_FILE = "vgg19-dcbb9e9d.pth"

# VGG19 "E" configuration: output channels per conv, "M" = 2x2 max pool.
_VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


def _layer_names() -> list[str]:
    """Names of ``torchvision.models.vgg19().features`` in index order: conv1_1, relu1_1, ..., relu5_4, pool5."""
    names, block, conv = [], 1, 1
    for v in _VGG19_CFG:
        if v == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 1
        else:
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
            conv += 1
    return names


VGG19_LAYERS = tuple(_layer_names())

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def default_vgg_weights() -> Path:
    """Where torchvision would cache VGG19: ``$TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE


def _vgg19_features(last: int) -> nn.Sequential:
    """``vgg19().features[: last + 1]`` with the same module indices (so state-dict keys match), on the meta device.

    Building only the needed convolutions on "meta" skips initialising 140M parameters that the file replaces.
    """
    layers: list[nn.Module] = []
    in_ch = 3
    for v in _VGG19_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_ch, v, kernel_size=3, padding=1, device="meta"), nn.ReLU(inplace=True)]
            in_ch = v
    return nn.Sequential(*layers[: last + 1])


def _load_features_state(path: Path) -> dict[str, torch.Tensor]:
    """Reads a VGG19 state dict, full (``features.N.*`` + ``classifier.*``) or features-only (``N.*``)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and torch errors alike: any unreadable file gets one line
        raise VsrError(f"cannot read VGG19 weights {path}: {type(e).__name__}: {e}".splitlines()[0]) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise VsrError(f"not a VGG19 state dict: {path}")
    features = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.startswith("classifier."):
            continue
        features[key.removeprefix("features.")] = value
    return features


class PerceptualLoss(nn.Module):
    """SRGAN's VGG loss: MSE between VGG19 feature maps of SR and HR, times the paper's rescaling.

    The paper (Sec. 3.2) uses phi_5,4, the feature map after the 4th convolution and its ReLU before the 5th max
    pool (``relu5_4``), and "rescaled the VGG feature maps by 1/12.75 ... equivalent to multiplying Eq. 5 with a
    rescaling factor of ~0.006": scaling features by 1/12.75 scales their squared error by 1/12.75**2 = 0.00615,
    which is the default ``scale`` (reimplementations that multiply the MSE by 1/12.75 scale it 12.75x too much).
    The factor was chosen so the VGG loss is of the size of the pixel MSE *in the paper's setting* (Caffe VGG on
    0..255 BGR inputs, MSE on [-1, 1] images); with torchvision's VGG on ImageNet-normalised inputs the magnitudes
    differ, so the weight of this term against the adversarial and pixel terms is a hyper-parameter, not a truth.

    The VGG is frozen and always in eval mode; gradients flow to ``sr`` only.

    Args:
        weights_path: A torchvision VGG19 state dict (full ``vgg19().state_dict()`` or only its ``features``);
            default :func:`default_vgg_weights`. Never downloaded.
        layer: Last layer to run, by name: ``relu5_4`` (the paper's phi_5,4), ``conv5_4`` (before activation, as
            ESRGAN), ``relu2_2`` (phi_2,2), ... any of :data:`VGG19_LAYERS`.
        scale: Multiplies the feature MSE.

    Raises:
        VsrError: the weights file is missing or unreadable, or ``layer`` is unknown.
    """

    def __init__(self, weights_path: str | Path | None = None, layer: str = "relu5_4", scale: float = 1 / 12.75**2):
        super().__init__()
        if layer not in VGG19_LAYERS:
            raise VsrError(f"unknown VGG19 layer {layer!r}; choose one of: {', '.join(VGG19_LAYERS)}")
        path = Path(weights_path) if weights_path else default_vgg_weights()
        if not path.is_file():
            if weights_path:
                hint = f"{path} does not exist; point --perceptual-weights at torchvision's {VGG19_FILE}"
            else:
                hint = f"put {VGG19_FILE} in {path.parent} or pass --perceptual-weights PATH"
            raise VsrError(f"VGG19 ImageNet weights not found: {hint} (or use --perceptual none)")
        self.features = _vgg19_features(VGG19_LAYERS.index(layer))
        state = _load_features_state(path)
        wanted = self.features.state_dict().keys()
        missing = [k for k in wanted if k not in state]
        if missing:
            raise VsrError(f"not a VGG19 state dict: {path} lacks {missing[0]} (expected torchvision's vgg19)")
        try:
            self.features.load_state_dict({k: state[k] for k in wanted}, assign=True)
        except RuntimeError as e:
            raise VsrError(f"not a VGG19 state dict: {path} ({str(e).splitlines()[-1].strip()})") from None
        self.features.requires_grad_(False)
        self.layer = layer
        self.scale = scale
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def train(self, mode: bool = True) -> PerceptualLoss:
        """Stays in eval mode: the VGG is a fixed measuring instrument, whatever the trainer's mode."""
        return super().train(False)

    def _features(self, img: torch.Tensor) -> torch.Tensor:
        return self.features((img - self.mean) / self.std)

    def forward(self, sr: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        """Scaled feature MSE.

        Args:
            sr: (N, 3, H, W) network output, RGB in [0, 1].
            gt: (N, 3, H, W) target, RGB in [0, 1].

        Returns:
            Scalar loss (float32, also under autocast).
        """
        with torch.no_grad():
            target = self._features(gt)
        return F.mse_loss(self._features(sr).float(), target.float()) * self.scale

