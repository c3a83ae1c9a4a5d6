"""The Real-ESRGAN peers the footage benchmark compares with (never shipped): their two generators as BasicSR names
them, and a loader for Real-ESRGAN's weights files (spandrel when installed, else these definitions).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

SCALE = 4


class _RDB(nn.Module):
    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        for i in range(5):
            setattr(self, f"conv{i + 1}", nn.Conv2d(num_feat + i * num_grow_ch, num_grow_ch if i < 4 else num_feat,
                                                    3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for i in range(1, 5):
            feats.append(F.leaky_relu(getattr(self, f"conv{i}")(torch.cat(feats, 1)), 0.2))
        return self.conv5(torch.cat(feats, 1)) * 0.2 + x


class _RRDB(nn.Module):
    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        self.rdb1, self.rdb2, self.rdb3 = (_RDB(num_feat, num_grow_ch) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """ESRGAN's generator as BasicSR names it (Real-ESRGAN x4plus: 23 blocks, 64 features, growth 32), x4 only."""

    def __init__(self, num_block: int = 23, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.scale = 4
        self.conv_first = nn.Conv2d(3, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(_RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, 3, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = F.leaky_relu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        feat = F.leaky_relu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))


class SRVGGNetCompact(nn.Module):
    """Real-ESRGAN's compact video net (animevideov3: 16 convs, 64 features, PReLU), BasicSR's names."""

    def __init__(self, num_feat: int = 64, num_conv: int = 16, scale: int = 4) -> None:
        super().__init__()
        self.scale = scale
        layers: list[nn.Module] = [nn.Conv2d(3, num_feat, 3, 1, 1), nn.PReLU(num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.PReLU(num_feat)]
        layers.append(nn.Conv2d(num_feat, 3 * scale * scale, 3, 1, 1))
        self.body = nn.Sequential(*layers)
        self.upsampler = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsampler(self.body(x)) + F.interpolate(x, scale_factor=self.scale, mode="nearest")


def peer_name(path: Path) -> str:
    """"RealESRGAN_x4plus_from_ncnn.pth" -> "peer x4plus": short enough for a picture label."""
    stem = path.stem.removesuffix("_from_ncnn").removeprefix("RealESRGAN_").removeprefix("realesr-")
    return f"peer {stem}"


def load_peer(path: Path, use_spandrel: bool = True) -> nn.Module:
    """A Real-ESRGAN weights file ({"params_ema"} or {"params"}) as an x4 module: spandrel if installed, else ours."""
    try:
        if not use_spandrel:
            raise ImportError
        import spandrel  # noqa: PLC0415  (optional)

        model = spandrel.ModelLoader().load_from_file(str(path)).model
    except ImportError:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("params_ema", state.get("params", state))
        if "conv_first.weight" in state:
            num_block = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("body."))
            model = RRDBNet(num_block=num_block, num_feat=state["conv_first.weight"].shape[0])
        else:
            num_conv = (1 + max(int(k.split(".")[1]) for k in state if k.startswith("body."))) // 2 - 1
            model = SRVGGNetCompact(num_feat=state["body.0.weight"].shape[0], num_conv=num_conv)
        model.load_state_dict({k: v.float() for k, v in state.items()})
    model.scale = SCALE
    return model.float().eval()
