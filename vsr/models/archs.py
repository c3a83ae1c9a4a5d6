"""The super-resolution networks and the SRGAN discriminator, as plain ``nn.Module`` classes.

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
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from vsr.errors import VsrError

SCALES = (2, 3, 4, 8)


def check_scale(scale: int, allowed: tuple[int, ...] = SCALES) -> int:
    if isinstance(scale, bool) or not isinstance(scale, int) or scale not in allowed:
        raise VsrError(f"scale must be one of {', '.join(map(str, allowed))}, got {scale!r}")
    return scale


def _bicubic_up(lq: torch.Tensor, scale: int) -> torch.Tensor:
    """torch's bicubic (a = -0.75, as OpenCV's INTER_CUBIC), on the model's device and batch: the upscaling inside
    SRCNN (part of what it learnt) and the ``Bicubic`` model, which must run wherever a network would. The SR papers'
    baseline is another bicubic (Pillow, a = -0.5, `vsr.data.bicubic_upscale`); `vsr eval` scores against that one.
    """
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


def srresnet_upsampler(num_feat: int, scale: int) -> nn.Sequential:
    """SRResNet's upsampler: log2(scale) x [conv3x3 to 4 * num_feat, PixelShuffle(2), PReLU] (x3: one stage with
    9 * num_feat and PixelShuffle(3))."""
    factors = [3] if scale == 3 else [2] * int(math.log2(scale))
    stages: list[nn.Module] = []
    for f in factors:
        stages += [nn.Conv2d(num_feat, num_feat * f * f, 3, 1, 1), nn.PixelShuffle(f), nn.PReLU(num_feat)]
    return nn.Sequential(*stages)


@torch.no_grad()
def init_residual_branches(body: nn.Sequential) -> None:
    """As in BasicSR's MSRResNet: residual branches start small (x0.1 He init) so that the block stack starts close
    to identity and early training does not blow up. In train mode the BN after each conv divides that scale away
    again, so the last BN's gain starts at 0.1 as well (torchvision ResNet's zero_init_residual, softened)."""
    for block in body:
        for conv in (block.conv1, block.conv2):
            nn.init.kaiming_normal_(conv.weight)
            conv.weight.mul_(0.1)
        nn.init.constant_(block.bn2.weight, 0.1)


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
        self.scale = check_scale(scale)
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 9, 1, 4)
        self.prelu_first = nn.PReLU(num_feat)
        self.body = nn.Sequential(*(ResidualBlock(num_feat) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=False)
        self.bn_body = nn.BatchNorm2d(num_feat)
        self.upsample = srresnet_upsampler(num_feat, scale)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 9, 1, 4)
        init_residual_branches(self.body)

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
        self.scale = check_scale(scale)
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
        self.scale = check_scale(scale)
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
        self.scale = check_scale(scale)
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
        self.scale = check_scale(scale)
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
        self.scale = check_scale(scale)
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
