"""Super-resolution networks, their registry and their weight files.

Every model maps ``lq`` (N, 3, h, w) float in [0, 1] to (N, 3, h * scale, w * scale) and has a ``.scale`` attribute.
Outputs are not clamped (training needs the gradient); whoever converts to uint8 clamps. Only ``Bicubic`` clamps,
because it is the reference "no network" result.

Architectures follow their papers:

* ``SRResNet``: Ledig et al., "Photo-Realistic Single Image Super-Resolution Using a GAN", CVPR 2017 (also the SRGAN
  generator). Parameter names follow BasicSR (``conv_first``, ``body``, ``upsample``, ``conv_last``) but, unlike
  BasicSR's MSRResNet, this keeps the paper's BatchNorm, 9x9 outer convs and PReLU, and has no bicubic skip.
* ``SRCNN``: Dong et al., TPAMI 2016 (the 9-5-5 variant). ``FSRCNN``: Dong et al., ECCV 2016.
  ``ESPCN``: Shi et al., CVPR 2016. ``EncoderDecoder``: a plain baseline with no paper.
* ``Discriminator``: the SRGAN discriminator.

Weight files are ``{"arch", "args", "state_dict", "meta"}`` dicts saved by :func:`save_weights`; BasicSR-style
``{"params" | "params_ema": state_dict}`` files load too when the architecture is named.
"""

import copy
import math
import os
import re
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from vsr.errors import VsrError

SCALES = (2, 3, 4, 8)

# Shipped weights live in <repo>/weights, next to the vsr package; $VSR_WEIGHTS_DIR overrides (read at call time).
DEFAULT_WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


def _check_scale(scale: int, allowed: tuple[int, ...] = SCALES) -> int:
    if isinstance(scale, bool) or not isinstance(scale, int) or scale not in allowed:
        raise VsrError(f"scale must be one of {', '.join(map(str, allowed))}, got {scale!r}")
    return scale


def _bicubic_up(lq: torch.Tensor, scale: int) -> torch.Tensor:
    return F.interpolate(lq, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)


class ResidualBlock(nn.Module):
    """SRResNet block: conv3-BN-PReLU-conv3-BN plus identity skip.

    The convs have no bias: the BN right after each one has its own shift, so a bias would be redundant.
    """

    def __init__(self, num_feat: int = 64) -> None:
        super().__init__()
        # Registration order = data-flow order (conv directly before its BN): fold_batchnorm relies on it.
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(num_feat)
        self.prelu = nn.PReLU(num_feat)
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(num_feat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn2(self.conv2(self.prelu(self.bn1(self.conv1(x)))))


class SRResNet(nn.Module):
    """SRResNet (= SRGAN generator) exactly as Ledig et al. 2017, Fig. 4.

    conv9x9 + PReLU -> num_block residual blocks -> conv3x3 + BN + global skip -> log2(scale) x [conv3x3 to
    4 * num_feat, PixelShuffle(2), PReLU] (x3: one stage with 9 * num_feat and PixelShuffle(3)) -> conv9x9.
    PReLUs have one slope per channel (He et al. 2015's form). No bicubic skip: the paper has none.

    Args:
        num_in_ch: input channels.
        num_out_ch: output channels.
        num_feat: feature channels (64 in the paper).
        num_block: residual blocks (16 in the paper).
        scale: upscaling factor, one of 2, 3, 4, 8.
    """

    def __init__(
        self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_block: int = 16, scale: int = 4
    ) -> None:
        super().__init__()
        self.scale = _check_scale(scale)
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 9, 1, 4)
        self.prelu_first = nn.PReLU(num_feat)
        self.body = nn.Sequential(*(ResidualBlock(num_feat) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=False)
        self.bn_body = nn.BatchNorm2d(num_feat)
        factors = [3] if scale == 3 else [2] * int(math.log2(scale))
        stages: list[nn.Module] = []
        for f in factors:
            stages += [nn.Conv2d(num_feat, num_feat * f * f, 3, 1, 1), nn.PixelShuffle(f), nn.PReLU(num_feat)]
        self.upsample = nn.Sequential(*stages)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 9, 1, 4)

        for block in self.body:
            for conv in (block.conv1, block.conv2):
                # As in BasicSR's MSRResNet: residual branches start small (x0.1 He init) so that the 16-block
                # stack starts close to identity and early training does not blow up. In train mode the BN
                # after each conv divides that scale away again, so the last BN's gain starts at 0.1 as well
                # (the same idea as torchvision ResNet's zero_init_residual, softened).
                nn.init.kaiming_normal_(conv.weight)
                conv.weight.data.mul_(0.1)
            nn.init.constant_(block.bn2.weight, 0.1)

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        feat = self.prelu_first(self.conv_first(lq))
        out = self.bn_body(self.conv_body(self.body(feat))) + feat
        return self.conv_last(self.upsample(out))


class SRCNN(nn.Module):
    """SRCNN (Dong et al. 2016), 9-5-5 variant, on RGB.

    The paper's network works on a bicubic-upscaled image; that upscaling is done inside ``forward`` so the
    interface stays ``lq -> sr``. Convs are padded ("same") so the output keeps the upscaled size.

    Args:
        num_in_ch: input channels.
        num_out_ch: output channels.
        num_feat: n1, channels of the 9x9 feature layer (64).
        num_feat2: n2, channels of the 5x5 mapping layer (32).
        scale: upscaling factor.
    """

    def __init__(
        self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_feat2: int = 32, scale: int = 4
    ) -> None:
        super().__init__()
        self.scale = _check_scale(scale)
        self.conv1 = nn.Conv2d(num_in_ch, num_feat, 9, 1, 4)
        self.conv2 = nn.Conv2d(num_feat, num_feat2, 5, 1, 2)
        self.conv3 = nn.Conv2d(num_feat2, num_out_ch, 5, 1, 2)

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        x = _bicubic_up(lq, self.scale)
        return self.conv3(F.relu(self.conv2(F.relu(self.conv1(x)))))


class FSRCNN(nn.Module):
    """FSRCNN (Dong et al. 2016): works at low resolution and upscales with a final 9x9 deconvolution.

    Args:
        num_in_ch: input channels.
        num_out_ch: output channels.
        num_feat: d, feature channels (56).
        num_shrink: s, channels after shrinking (12).
        num_map: m, 3x3 mapping layers (4).
        scale: upscaling factor (the deconvolution's stride).
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 56,
        num_shrink: int = 12,
        num_map: int = 4,
        scale: int = 4,
    ) -> None:
        super().__init__()
        self.scale = _check_scale(scale)
        self.feature = nn.Sequential(nn.Conv2d(num_in_ch, num_feat, 5, 1, 2), nn.PReLU(num_feat))
        self.shrink = nn.Sequential(nn.Conv2d(num_feat, num_shrink, 1), nn.PReLU(num_shrink))
        mapping: list[nn.Module] = []
        for _ in range(num_map):
            mapping += [nn.Conv2d(num_shrink, num_shrink, 3, 1, 1), nn.PReLU(num_shrink)]
        self.map = nn.Sequential(*mapping)
        self.expand = nn.Sequential(nn.Conv2d(num_shrink, num_feat, 1), nn.PReLU(num_feat))
        # (h - 1) * s - 2 * 4 + 9 + (s - 1) = h * s exactly.
        self.deconv = nn.ConvTranspose2d(num_feat, num_out_ch, 9, scale, 4, output_padding=scale - 1)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
                nn.init.zeros_(m.bias)
        # The paper draws the deconvolution from N(0, 0.001^2): a He-scaled one starts with far too large outputs.
        nn.init.normal_(self.deconv.weight, std=0.001)
        nn.init.zeros_(self.deconv.bias)

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.expand(self.map(self.shrink(self.feature(lq)))))


class ESPCN(nn.Module):
    """ESPCN (Shi et al. 2016): convs at low resolution, then one sub-pixel (PixelShuffle) layer.

    Hidden activations are tanh, as in the paper (it reports tanh beating ReLU for this net); ReLU would train a
    little faster but we keep the paper's design so its numbers are the reference.

    Args:
        num_in_ch: input channels.
        num_out_ch: output channels.
        num_feat: channels of the 5x5 layer (64).
        num_feat2: channels of the 3x3 layer (32).
        scale: upscaling factor.
    """

    def __init__(
        self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_feat2: int = 32, scale: int = 4
    ) -> None:
        super().__init__()
        self.scale = _check_scale(scale)
        self.conv1 = nn.Conv2d(num_in_ch, num_feat, 5, 1, 2)
        self.conv2 = nn.Conv2d(num_feat, num_feat2, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat2, num_out_ch * scale * scale, 3, 1, 1)
        self.pixel_shuffle = nn.PixelShuffle(scale)

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        return self.pixel_shuffle(self.conv3(torch.tanh(self.conv2(torch.tanh(self.conv1(lq))))))


class EncoderDecoder(nn.Module):
    """Plain encoder-decoder baseline: strided convs down, transposed convs back up, then more to reach ``scale``.

    No skips of any kind, on purpose: it is the baseline showing what SRResNet's residual design buys. Inputs whose
    size is not a multiple of ``2 ** num_down`` are edge-padded and the output cropped, so any frame size works.

    Args:
        num_in_ch: input channels.
        num_out_ch: output channels.
        num_feat: channels at full resolution, doubled at each downsampling.
        num_down: stride-2 downsamplings (and as many transposed convs back up).
        num_block: 3x3 conv + ReLU layers at the bottleneck.
        scale: upscaling factor: log2(scale) stride-2 transposed convs (x3: one stride-3 one).
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_down: int = 2,
        num_block: int = 2,
        scale: int = 4,
    ) -> None:
        super().__init__()
        self.scale = _check_scale(scale)
        self.num_down = num_down
        self.conv_first = nn.Sequential(nn.Conv2d(num_in_ch, num_feat, 3, 1, 1), nn.ReLU(inplace=True))
        chans = [num_feat * 2**i for i in range(num_down + 1)]
        down: list[nn.Module] = []
        for c_in, c_out in zip(chans, chans[1:]):
            down += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.ReLU(inplace=True)]  # exactly halves an even size
        self.down = nn.Sequential(*down)
        body: list[nn.Module] = []
        for _ in range(num_block):
            body += [nn.Conv2d(chans[-1], chans[-1], 3, 1, 1), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*body)
        up: list[nn.Module] = []
        for c_in, c_out in zip(chans[::-1], chans[-2::-1]):
            up += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), nn.ReLU(inplace=True)]  # exactly doubles
        self.up = nn.Sequential(*up)
        # Stride 2: kernel 4, padding 1 doubles; stride 3: kernel 5, padding 1 triples.
        ups = [(5, 3)] if scale == 3 else [(4, 2)] * int(math.log2(scale))
        upsample: list[nn.Module] = []
        for kernel, stride in ups:
            upsample += [nn.ConvTranspose2d(num_feat, num_feat, kernel, stride, 1), nn.ReLU(inplace=True)]
        self.upsample = nn.Sequential(*upsample)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        h, w = lq.shape[-2:]
        m = 2**self.num_down
        pad_h, pad_w = -h % m, -w % m
        if pad_h or pad_w:
            lq = F.pad(lq, (0, pad_w, 0, pad_h), mode="replicate")
        out = self.conv_last(self.upsample(self.up(self.body(self.down(self.conv_first(lq))))))
        return out[..., : h * self.scale, : w * self.scale]


class Bicubic(nn.Module):
    """Bicubic upscaling as a model with no parameters (``F.interpolate``, ``align_corners=False``, clamped).

    Args:
        scale: upscaling factor.
    """

    def __init__(self, scale: int = 4) -> None:
        super().__init__()
        self.scale = _check_scale(scale)
        # An empty buffer so that .to(device) / .half() and "which device/dtype is this model on?" work as for the
        # other models. Not persistent: the state_dict stays empty.
        self.register_buffer("_probe", torch.empty(0), persistent=False)

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        return _bicubic_up(lq, self.scale)


class Discriminator(nn.Module):
    """SRGAN discriminator (Ledig et al. 2017, Fig. 4), returning logits.

    Eight 3x3 convs with LeakyReLU(0.2), BN on all but the first, strides 1/2 alternating, channels 64 -> 512;
    then an adaptive average pool to 6x6 (a 96x96 crop is already 6x6 there, so for the paper's crops it is the
    identity, and other crop sizes work too), dense 1024, LeakyReLU, dense 1. No sigmoid: pair it with
    ``BCEWithLogits`` (numerically safer, and autocast-safe).

    Args:
        num_in_ch: input channels.
        num_feat: channels of the first conv (64); doubled every two convs.
    """

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = num_in_ch
        for i in range(8):
            c_out = num_feat * 2 ** (i // 2)
            stride = 1 if i % 2 == 0 else 2
            layers.append(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=i == 0))
            if i > 0:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(6)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(c_in * 36, 1024), nn.LeakyReLU(0.2, inplace=True), nn.Linear(1024, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))


# Builders. `weights` (a file path) loads a state dict into the freshly built model, torchvision style.


def srresnet(*, scale: int = 4, weights: str | Path | None = None, **kwargs: Any) -> SRResNet:
    """SRResNet; kwargs: num_in_ch, num_out_ch, num_feat=64, num_block=16."""
    return _with_weights(SRResNet(scale=scale, **kwargs), "srresnet", weights)


def srcnn(*, scale: int = 4, weights: str | Path | None = None, **kwargs: Any) -> SRCNN:
    """SRCNN 9-5-5; kwargs: num_in_ch, num_out_ch, num_feat=64, num_feat2=32."""
    return _with_weights(SRCNN(scale=scale, **kwargs), "srcnn", weights)


def fsrcnn(*, scale: int = 4, weights: str | Path | None = None, **kwargs: Any) -> FSRCNN:
    """FSRCNN; kwargs: num_in_ch, num_out_ch, num_feat=56, num_shrink=12, num_map=4."""
    return _with_weights(FSRCNN(scale=scale, **kwargs), "fsrcnn", weights)


def espcn(*, scale: int = 4, weights: str | Path | None = None, **kwargs: Any) -> ESPCN:
    """ESPCN; kwargs: num_in_ch, num_out_ch, num_feat=64, num_feat2=32."""
    return _with_weights(ESPCN(scale=scale, **kwargs), "espcn", weights)


def encdec(*, scale: int = 4, weights: str | Path | None = None, **kwargs: Any) -> EncoderDecoder:
    """Encoder-decoder baseline; kwargs: num_in_ch, num_out_ch, num_feat=64, num_down=2, num_block=2."""
    return _with_weights(EncoderDecoder(scale=scale, **kwargs), "encdec", weights)


def bicubic(*, scale: int = 4, weights: str | Path | None = None) -> Bicubic:
    """Bicubic upscaling; has no parameters, so ``weights`` must be None."""
    if weights is not None:
        raise VsrError("bicubic has no weights to load")
    return Bicubic(scale=scale)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "srresnet": srresnet,
    "srcnn": srcnn,
    "fsrcnn": fsrcnn,
    "espcn": espcn,
    "encdec": encdec,
    "bicubic": bicubic,
}


def list_models() -> list[str]:
    """Names of the registered architectures, in registry order."""
    return list(MODELS)


def build_model(arch: str, **args: Any) -> nn.Module:
    """Builds an architecture from the registry with random weights.

    Args:
        arch: a name from :func:`list_models`.
        **args: the builder's keyword arguments (``scale`` and the class's own).

    Raises:
        VsrError: unknown ``arch``, unsupported scale, or arguments the architecture does not take.
    """
    if arch not in MODELS:
        raise VsrError(f"unknown model {arch!r}; choose one of: {', '.join(MODELS)}")
    try:
        return MODELS[arch](**args)
    except TypeError as e:
        raise VsrError(f"bad arguments for {arch}: {e}") from None


# Weight files.


def _strip_prefixes(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # DistributedDataParallel adds "module.", torch.compile adds "_orig_mod."; either may wrap the other.
    out = {}
    for key, value in state_dict.items():
        while key.startswith(("module.", "_orig_mod.")):
            key = key.split(".", 1)[1]
        out[key] = value
    return out


def _unwrap(model: nn.Module) -> nn.Module:
    # DistributedDataParallel keeps the model in .module, torch.compile in ._orig_mod.
    for attr in ("module", "_orig_mod", "module"):
        inner = getattr(model, attr, None)
        if isinstance(inner, nn.Module):
            model = inner
    return model


def save_weights(
    model: nn.Module, path: str | Path, *, arch: str, args: dict[str, Any], meta: dict[str, Any] | None = None
) -> None:
    """Saves ``{"arch", "args", "state_dict", "meta"}`` with tensors on the CPU, atomically (temp file + rename).

    Args:
        model: the model (DDP / torch.compile wrappers are unwrapped). Must not be BN-folded.
        path: the file to write (``.pt``).
        arch: its registry name; ``build_model(arch, **args)`` must rebuild it.
        args: builder arguments; ``scale`` is added from ``model.scale`` if missing.
        meta: free-form facts about the weights (``trained_steps``, ``precision_ok``, scores, ...).
    """
    model = _unwrap(model)
    if getattr(model, "bn_folded", False):
        raise ValueError("cannot save a BN-folded model: its state_dict no longer matches its architecture")
    if arch not in MODELS:
        raise ValueError(f"unknown arch {arch!r}")
    args = dict(args)
    args.setdefault("scale", model.scale)
    if args["scale"] != model.scale:
        raise ValueError(f"args scale {args['scale']} != model.scale {model.scale}")
    state_dict = {k: v.detach().cpu().clone() for k, v in _strip_prefixes(model.state_dict()).items()}
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        torch.save({"arch": arch, "args": args, "state_dict": state_dict, "meta": dict(meta or {})}, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _infer_basicsr_args(arch: str, state_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Reads SRResNet's sizes (and scale) off a bare state dict; other archs build with their defaults."""
    if arch != "srresnet" or "conv_first.weight" not in state_dict or "conv_last.weight" not in state_dict:
        return {}
    num_feat, num_in_ch = state_dict["conv_first.weight"].shape[:2]
    blocks = {int(m.group(1)) for k in state_dict if (m := re.match(r"body\.(\d+)\.", k))}
    up_convs = [v for k, v in state_dict.items() if re.fullmatch(r"upsample\.\d+\.weight", k) and v.ndim == 4]
    args = dict(num_in_ch=num_in_ch, num_out_ch=state_dict["conv_last.weight"].shape[0], num_feat=num_feat)
    args["num_block"] = len(blocks)
    if up_convs:
        args["scale"] = 3 if up_convs[0].shape[0] == 9 * num_feat else 2 ** len(up_convs)
    return args


def load_weights_file(
    path: str | Path, arch: str | None = None
) -> tuple[str, dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    """Reads a weights file safely (``weights_only=True``), onto the CPU.

    Accepts vsr files (:func:`save_weights`) and, when ``arch`` is given, BasicSR / Real-ESRGAN files
    ``{"params_ema" | "params": state_dict}`` (EMA preferred) or a bare state dict. ``module.`` / ``_orig_mod.``
    prefixes are stripped. For BasicSR files ``args`` holds what could be read off the tensors (SRResNet: sizes and
    scale), else ``{}``.

    Args:
        path: the file.
        arch: architecture name; required for files that do not name theirs, checked against those that do.

    Returns:
        ``(arch, args, state_dict, meta)``.

    Raises:
        VsrError: missing or unreadable file, not a weights dict, unknown or conflicting arch.
    """
    path = Path(path)
    if not path.is_file():
        raise VsrError(f"no such weights file: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises UnpicklingError, RuntimeError, EOFError, ValueError... on bad files
        if "Weights only load failed" in str(e):
            raise VsrError(f"refusing to load {path}: it holds Python objects, not just tensors") from None
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        raise VsrError(f"cannot read weights file {path}: not a PyTorch weights file ({reason})") from None
    if arch is not None and arch not in MODELS:
        raise VsrError(f"unknown model {arch!r}; choose one of: {', '.join(MODELS)}")

    def is_state_dict(d: Any) -> bool:
        return isinstance(d, dict) and bool(d) and all(isinstance(k, str) and torch.is_tensor(v) for k, v in d.items())

    if isinstance(ckpt, dict) and "arch" in ckpt and "state_dict" in ckpt:
        file_arch, args, state_dict, meta = ckpt["arch"], ckpt.get("args") or {}, ckpt["state_dict"], ckpt.get("meta")
        if file_arch not in MODELS:
            raise VsrError(f"weights {path} are for an unknown model {file_arch!r}; known: {', '.join(MODELS)}")
        if arch is not None and arch != file_arch:
            raise VsrError(f"weights {path} are for {file_arch}, not {arch}")
        if not isinstance(args, dict) or not isinstance(state_dict, dict):
            raise VsrError(f"weights {path} are damaged: 'args' and 'state_dict' must be dicts")
        return file_arch, dict(args), _strip_prefixes(state_dict), dict(meta) if isinstance(meta, dict) else {}

    key = next((k for k in ("params_ema", "params") if isinstance(ckpt, dict) and is_state_dict(ckpt.get(k))), None)
    if key is not None or is_state_dict(ckpt):
        if arch is None:
            raise VsrError(f"{path} does not say which model it is for; name the model (e.g. --model srresnet)")
        state_dict = _strip_prefixes(ckpt[key] if key else ckpt)
        return arch, _infer_basicsr_args(arch, state_dict), state_dict, {"source": key or "state_dict"}
    raise VsrError(f"{path} is not a weights file (expected a dict with 'arch', 'args', 'state_dict' or 'params')")


def _load_state(model: nn.Module, state_dict: dict[str, torch.Tensor], path: Path, arch: str, args: dict) -> None:
    """``load_state_dict(strict=True)`` with a one-line VsrError saying what does not fit."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    wrong = [k for k in own if k in state_dict and own[k].shape != state_dict[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} of the wrong shape (e.g. {k}: {tuple(state_dict[k].shape)} in the file, "
                         f"{tuple(own[k].shape)} in the model)")
        hint = ""
        if "upconv1.weight" in state_dict or "conv_hr.weight" in state_dict:
            hint = "; it looks like BasicSR's MSRResNet (no BatchNorm), which is not the paper's SRResNet"
        raise VsrError(f"weights {path} do not fit {arch} {args}: keys {', '.join(parts)}{hint}")
    model.load_state_dict(state_dict)


def _with_weights(model: nn.Module, arch: str, weights: str | Path | None) -> nn.Module:
    if weights is not None:
        _, args, state_dict, _ = load_weights_file(weights, arch)
        if args.get("scale", model.scale) != model.scale:
            raise VsrError(f"weights {weights} are for x{args['scale']}, asked for x{model.scale}")
        _load_state(model, state_dict, Path(weights), arch, args)
    return model


def weights_dir() -> Path:
    """Where shipped weights live: ``$VSR_WEIGHTS_DIR`` if set, else ``<repo>/weights``."""
    return Path(os.environ["VSR_WEIGHTS_DIR"]) if os.environ.get("VSR_WEIGHTS_DIR") else DEFAULT_WEIGHTS_DIR


def find_weights(name: str, scale: int) -> Path | None:
    """The shipped weights file ``<weights dir>/<name>_x<scale>.pt``, or None if there is none."""
    path = weights_dir() / f"{name}_x{scale}.pt"
    return path if path.is_file() else None


def _looks_like_path(name: str) -> bool:
    return os.sep in name or "/" in name or Path(name).suffix != "" or Path(name).is_file()


def load_model(
    name_or_path: str | Path = "srresnet",
    scale: int | None = 4,
    device: str | torch.device = "cpu",
    half: bool = False,
    *,
    arch: str | None = None,
    fold_bn: bool = True,
) -> nn.Module:
    """Loads a model ready for inference.

    Args:
        name_or_path: a weights file, a shipped name (``<weights dir>/<name>_x<scale>.pt``: "srresnet", "srgan",
            "srresnet_real", "espcn", ...), or "bicubic" (needs no weights).
        scale: the wanted factor; must match the file's. None: take the file's.
        device: "cpu", "cuda", "cuda:N", a torch.device, or "auto" (CUDA if available).
        half: convert to float16 (for CUDA inference).
        arch: architecture name; needed for BasicSR-style files, checked against vsr files.
        fold_bn: fold BatchNorm into the preceding convs (same output, fewer ops).

    Returns:
        The model in eval mode on ``device``, with ``.scale``, ``.arch`` (str), ``.args`` (dict) and ``.meta``
        (dict, the file's meta, e.g. ``{"precision_ok": ["bf16"], "trained_steps": ...}``).

    Raises:
        VsrError: no weights for that name and scale, unreadable or foreign file, wrong scale, arch or sizes,
            unusable device.
    """
    name = str(name_or_path)
    if name == "bicubic" and not Path(name).is_file():
        model, meta, args, file_arch = Bicubic(scale=scale or 4), {}, {"scale": scale or 4}, "bicubic"
    else:
        path = Path(name) if isinstance(name_or_path, Path) or _looks_like_path(name) else None
        if path is None:
            # A shipped file named after an architecture is that architecture (lets BasicSR files ship as-is).
            arch = arch or (name if name in MODELS else None)
            path = find_weights(name, scale or 4)
            if path is None:
                have = sorted(p.name for p in weights_dir().glob(f"{name}_x*.pt"))
                note = f" (have: {', '.join(have)})" if have else ""
                raise VsrError(
                    f"no weights for {name} x{scale or 4}{note}; pass --weights PATH or train one with vsr train"
                )
        file_arch, args, state_dict, meta = load_weights_file(path, arch)
        file_scale = args.get("scale")
        if scale is not None and file_scale is not None and file_scale != scale:
            raise VsrError(f"weights {path} are for x{file_scale}, asked for x{scale}")
        args["scale"] = file_scale or scale or 4
        model = build_model(file_arch, **args)
        _load_state(model, state_dict, path, file_arch, args)
    model.arch, model.args, model.meta = file_arch, args, meta
    model.eval()
    if fold_bn:
        fold_batchnorm(model)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        model.to(device)
    except (RuntimeError, AssertionError, ValueError) as e:
        raise VsrError(f"cannot use device {device}: {(str(e).splitlines() or [''])[0]}") from None
    return model.half() if half else model


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Folds each BatchNorm2d that directly follows a Conv2d into that conv, and replaces the BN by Identity.

    "Directly follows" means: the BN is the next child registered after the conv in the same parent, with
    ``num_features == conv.out_channels`` (true in Sequentials, and this file's models register in data-flow
    order). In eval mode the output is unchanged (to float rounding, ~1e-6): ``y = gamma * (conv(x) - mean) /
    sqrt(var + eps) + beta`` is itself a conv. BNs without running statistics are left alone. In place.

    Returns:
        ``model``, with ``model.bn_folded = True``.
    """
    for parent in list(model.modules()):
        children = list(parent.named_children())
        for (_, conv), (bn_name, bn) in zip(children, children[1:]):
            if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
                continue
            if bn.running_mean is None or bn.num_features != conv.out_channels:
                continue
            # Float64 so that folding adds no error of its own.
            inv_std = torch.rsqrt(bn.running_var.double() + bn.eps)
            gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(inv_std)
            beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(inv_std)
            bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(inv_std)
            factor = gamma * inv_std
            w = conv.weight
            conv.weight.copy_((w.double() * factor.view(-1, 1, 1, 1)).to(w.dtype))
            new_bias = ((bias - bn.running_mean.double()) * factor + beta).to(w.dtype)
            if conv.bias is None:
                conv.bias = nn.Parameter(new_bias, requires_grad=w.requires_grad)
            else:
                conv.bias.copy_(new_bias)
            setattr(parent, bn_name, nn.Identity())
    model.bn_folded = True
    return model


def count_flops(model: nn.Module, h: int, w: int) -> int:
    """FLOPs of one forward pass on a (1, 3, h, w) input: 2 x multiply-accumulates of conv, transposed-conv and
    linear layers (activations, BN, interpolation and bias adds are not counted).

    Runs on a copy of the model on the "meta" device (shapes only, no compute), falling back to a real forward pass
    if some op has no meta kernel.
    """
    counts: list[int] = []

    def hook(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        if isinstance(m, nn.Conv2d):
            counts.append(out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1])
        elif isinstance(m, nn.ConvTranspose2d):
            counts.append(inputs[0].numel() * (m.out_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1])
        elif isinstance(m, nn.Linear):
            counts.append(out.numel() * m.in_features)

    def run(net: nn.Module, device: torch.device, dtype: torch.dtype) -> int:
        counts.clear()
        handles = [m.register_forward_hook(hook) for m in net.modules()
                   if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
        try:
            with torch.no_grad():
                net(torch.zeros(1, 3, h, w, device=device, dtype=dtype))
        finally:
            for handle in handles:
                handle.remove()
        return 2 * sum(counts)

    tensor = next(iter(list(model.parameters()) + list(model.buffers())), None)
    dtype = tensor.dtype if tensor is not None else torch.float32
    try:
        return run(copy.deepcopy(model).eval().to("meta"), torch.device("meta"), dtype)
    except (NotImplementedError, RuntimeError):
        was_training = model.training
        model.eval()  # no BN running-stat updates from this probe
        try:
            return run(model, tensor.device if tensor is not None else torch.device("cpu"), dtype)
        finally:
            model.train(was_training)
