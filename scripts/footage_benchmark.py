#!/usr/bin/env python
"""The footage benchmark: how each model restores held-out frames of real clips through real recorder chains.

    scripts/footage_benchmark.py                          # ../shared/data/video, every shipped x4 model, the peers
    scripts/footage_benchmark.py my_dvr.avi --weights runs/mine/export.pt --frames 16 --out runs/footage

Frames: ``--frames`` consecutive frames from the held-out part of each clip (its last 20 %, the part `vsr prepare
--holdout 0.2` never gives the trainer), a centred ``--crop`` of each, mod-cropped to the scale. Each recorder chain
below is a fixed, seeded `vsr.data.Degradation` run over those frames as one piece of footage (real codecs through
PyAV: libx264, mpeg2video, swscale, bwdif). Scores: PSNR and SSIM on the BT.601 Y channel with a 4-pixel border,
and temporal flicker, mean |(sr_t - sr_t-1) - (hr_t - hr_t-1)| on Y in grey levels (0: moves as the original).
Models: bicubic, every shipped x4 weights file, ``--weights`` files, and the Real-ESRGAN peers in
``../shared/data/weights/peers`` (loaded with spandrel when installed, else with the small RRDBNet/SRVGGNetCompact
definitions here; they are compared with, never shipped).

Writes ``OUT/footage.md`` (the table), ``OUT/footage.json`` and ``OUT/footage_grid.png`` (crops of one frame of
the H.264 CRF 28 chain: LR, bicubic, every model, original, each labelled with its PSNR on the crop).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's vsr, not an installed one

from vsr import data, metrics, models, video  # noqa: E402
from vsr.errors import VsrError  # noqa: E402
from vsr.pipeline import Upscaler  # noqa: E402
from vsr.precision import choose_precision, resolve_device  # noqa: E402

SCALE = 4
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
HOLDOUT = 0.2  # the fraction `vsr prepare --holdout` keeps from training, taken from each clip's end
# Every stage off; each chain switches on what its recorder does. Values are fixed, so only the seeded noise and
# the codecs' own decisions vary, and those are fixed by the seed.
_OFF = dict(blur_sigma=(0.0, 0.0), noise_sigma=(0.0, 0.0), poisson_prob=0.0, camera_noise_prob=0.0,
            interlace_prob=0.0, chroma_prob=0.0, jpeg_prob=0.0, video_prob=0.0, mpeg2_prob=0.0,
            second_order_prob=0.0, codec_preset="veryfast")
CHAINS: dict[str, tuple[str, dict]] = {
    "h264_crf23": ("x4 downscale, H.264 CRF 23", dict(video_prob=1.0, crf=(23, 23))),
    "h264_crf28": ("x4 downscale, H.264 CRF 28 (a DVR)", dict(video_prob=1.0, crf=(28, 28))),
    "h264_crf33": ("x4 downscale, H.264 CRF 33", dict(video_prob=1.0, crf=(33, 33))),
    "mpeg2_dvd": ("x4 downscale, MPEG-2 at 0.4 bit/pixel (5 Mbit/s at 720x576)",
                  dict(video_prob=1.0, mpeg2_prob=1.0, mpeg2_bpp=(0.4, 0.4))),
    "interlaced_dvd": ("interlaced capture (fields 2 px apart), 4:1:1 chroma, MPEG-2 0.4 bit/pixel, bwdif",
                       dict(interlace_prob=1.0, field_motion=(2.0, 2.0), deinterlacers=("bwdif",), chroma_prob=1.0,
                            chroma_formats=("yuv411p",), video_prob=1.0, mpeg2_prob=1.0, mpeg2_bpp=(0.4, 0.4))),
    "noise_h264": ("low-light sensor noise (150 photons at white, read noise 0.5), H.264 CRF 28",
                   dict(camera_noise_prob=1.0, camera_peak=(150.0, 150.0), read_noise=(0.5, 0.5),
                        video_prob=1.0, crf=(28, 28))),
    "blur_h264": ("optics blur (sigma 1.5 HR px), H.264 CRF 28", dict(blur_sigma=(1.5, 1.5), video_prob=1.0,
                                                                      crf=(28, 28))),
}
GRID_CHAIN = "h264_crf28"


# ------------------------------------------------------------------------------------------------ Real-ESRGAN peers
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


# ------------------------------------------------------------------------------------------------ frames and chains
def chain(name: str) -> data.Degradation:
    return data.Degradation("realistic", **{**_OFF, **CHAINS[name][1]})


def held_out_frames(clip: Path, count: int, crop: tuple[int, int]) -> np.ndarray:
    """``count`` consecutive frames from the start of the clip's held-out end, centre-cropped to ``crop`` (w, h)."""
    total = video.probe(clip).frames
    if not total:
        with closing(video.read_frames(clip)) as batches:
            total = sum(len(b.frames) for b in batches)
    start = total - max(1, round(total * HOLDOUT))
    frames: list[np.ndarray] = []
    index = 0
    with closing(video.read_frames(clip)) as batches:
        for batch in batches:
            for frame in batch.frames:
                if index >= start and len(frames) < count:
                    frames.append(frame)
                index += 1
            if len(frames) >= count:
                break
    if not frames:
        raise VsrError(f"{clip}: no held-out frames")
    h, w = frames[0].shape[:2]
    cw, ch = min(crop[0], w) // SCALE * SCALE, min(crop[1], h) // SCALE * SCALE
    top, left = (h - ch) // 2, (w - cw) // 2
    return np.ascontiguousarray(np.stack(frames)[:, top : top + ch, left : left + cw])


# ------------------------------------------------------------------------------------------------ scoring
def _upscaler(model: nn.Module | None, precision: str) -> Upscaler | None:
    if model is None:
        return None  # bicubic: the protocol's Pillow bicubic (a = -0.5), as `vsr eval -m bicubic`
    device = resolve_device("cpu" if not torch.cuda.is_available() else "auto")
    return Upscaler(model, device, choose_precision(precision, device, getattr(model, "meta", None)))


def _upscale(upscaler: Upscaler | None, lr: np.ndarray) -> np.ndarray:
    if upscaler is None:
        return np.stack([data.bicubic_upscale(f, SCALE) for f in lr])
    out = [upscaler(torch.from_numpy(lr[i : i + 4]).to(upscaler.device)).cpu().numpy() for i in range(0, len(lr), 4)]
    return np.concatenate(out)


def score(sr: np.ndarray, hr: np.ndarray) -> dict:
    """Mean Y PSNR/SSIM over frames and the temporal flicker of an (N,H,W,3) output against its original."""
    pairs = [metrics.psnr_ssim_y(s, h, SCALE) for s, h in zip(sr, hr)]
    sr_y = [metrics.crop_border(metrics.rgb_to_y(f), SCALE) for f in sr]
    hr_y = [metrics.crop_border(metrics.rgb_to_y(f), SCALE) for f in hr]
    flicker = [float(np.mean(np.abs((sr_y[t] - sr_y[t - 1]) - (hr_y[t] - hr_y[t - 1])))) for t in range(1, len(sr))]
    return {"psnr": float(np.mean([p for p, _ in pairs])), "ssim": float(np.mean([s for _, s in pairs])),
            "flicker": float(np.mean(flicker)) if flicker else None}


def run_benchmark(clips: list[Path], model_list: dict[str, nn.Module | None], frames: int = 8,
                  crop: tuple[int, int] = (256, 192), seed: int = 0, precision: str = "auto",
                  chains: list[str] | None = None, log=print) -> dict:
    """Scores every model on every chain of every clip.

    Args:
        clips: Video files; their held-out frames are the originals.
        model_list: Display name -> x4 module (None = bicubic).
        frames, crop, seed, precision: As the command's options.
        chains: Names from :data:`CHAINS` (default all).
        log: Called with progress lines.

    Returns:
        {"chains": {name: description}, "clips": [...], "frames", "crop", "seed", "precision": {model: name},
        "scores": {model: {chain: {"psnr", "ssim", "flicker"}}} (means over clips, each clip weighted equally),
        "per_clip": {model: {chain: {clip: score}}}, "seconds": {model: s}, "grid": picture data}.
    """
    chains = chains or list(CHAINS)
    originals = {clip.name: held_out_frames(clip, frames, crop) for clip in clips}
    degraded = {(c, clip): chain(c).degrade_clip(hr, SCALE, np.random.default_rng([seed, ci, ki]))
                for ci, c in enumerate(chains) for ki, (clip, hr) in enumerate(originals.items())}
    per_clip: dict = {}
    seconds, precisions = {}, {}
    grid = {"lr": {}, "hr": {}, "sr": {}}
    for name, model in model_list.items():
        upscaler = _upscaler(model, precision)
        precisions[name] = upscaler.precision.name if upscaler else "fp32"
        started = time.perf_counter()
        for c in chains:
            for clip, hr in originals.items():
                lr = degraded[(c, clip)]
                sr = _upscale(upscaler, lr)
                per_clip.setdefault(name, {}).setdefault(c, {})[clip] = score(sr, hr)
                if c == GRID_CHAIN:
                    grid["sr"].setdefault(clip, {})[name] = sr[len(sr) // 2]
                    grid["lr"][clip], grid["hr"][clip] = lr[len(lr) // 2], hr[len(hr) // 2]
        seconds[name] = time.perf_counter() - started
        log(f"{name}: {seconds[name]:.0f} s ({precisions[name]})")
    scores = {name: {c: {k: float(np.mean([s[k] for s in per_clip[name][c].values()])) for k in ("psnr", "ssim",
                                                                                                   "flicker")}
                     for c in chains} for name in model_list}
    return {"chains": {c: CHAINS[c][0] for c in chains}, "clips": list(originals), "frames": frames,
            "crop": list(crop), "seed": seed, "precision": precisions, "scores": scores, "per_clip": per_clip,
            "seconds": seconds, "grid": grid}


def markdown_table(result: dict) -> str:
    """Rows: models; columns: chains; cells: Y-PSNR / SSIM / flicker; best PSNR of each chain in bold."""
    chains = list(result["chains"])
    best = {c: max(result["scores"][m][c]["psnr"] for m in result["scores"]) for c in chains}
    lines = ["| model | " + " | ".join(chains) + " | mean PSNR |", "|---" * (len(chains) + 2) + "|"]
    for name, per_chain in result["scores"].items():
        cells = []
        for c in chains:
            s = per_chain[c]
            psnr = f"**{s['psnr']:.2f}**" if s["psnr"] == best[c] else f"{s['psnr']:.2f}"
            cells.append(f"{psnr} / {s['ssim']:.3f} / {s['flicker']:.2f}")
        mean = np.mean([per_chain[c]["psnr"] for c in chains])
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {mean:.2f} |")
    return "\n".join(lines)


def picture_grid(result: dict, path: Path, side: int = 160) -> None:
    """One row per clip: LR (nearest) | each model | original, a centred ``side`` crop, labelled with crop PSNR."""
    grid = result["grid"]
    names = list(result["scores"])
    rows = []
    for clip, hr in grid["hr"].items():
        h, w = hr.shape[:2]
        s = min(side, h, w)
        top, left = (h - s) // 2, (w - s) // 2

        def cut(img: np.ndarray) -> np.ndarray:
            return img[top : top + s, left : left + s]

        lr_up = np.repeat(np.repeat(grid["lr"][clip], SCALE, 0), SCALE, 1)
        tiles = [(cut(lr_up), "LR (nearest)")]
        for name in names:
            sr = grid["sr"][clip][name]
            tiles.append((cut(sr), f"{name} {metrics.psnr_ssim_y(cut(sr), cut(hr), SCALE)[0]:.2f}"))
        tiles.append((cut(hr), "original"))
        rows.append(tiles)
    label_h, s = 14, rows[0][0][0].shape[0]
    canvas = Image.new("RGB", (s * len(rows[0]), (s + label_h) * len(rows)), "white")
    draw = ImageDraw.Draw(canvas)
    for r, tiles in enumerate(rows):
        for c, (img, label) in enumerate(tiles):
            canvas.paste(Image.fromarray(img), (c * s, r * (s + label_h) + label_h))
            draw.text((c * s + 2, r * (s + label_h) + 1), label[: s // 6], fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def default_models(weights: list[Path], peers: Path | None) -> dict[str, nn.Module | None]:
    """bicubic, the shipped x4 weights, ``weights`` files, then the peers (if the folder exists)."""
    found: dict[str, nn.Module | None] = {"bicubic": None}
    shipped = sorted(models.weights_dir().glob("*_x4.pt"))
    for path in [*shipped, *weights]:
        found[path.stem if path in shipped else str(path)] = models.load_model(path, device="cpu")
    if peers is not None and peers.is_dir():
        for path in sorted(peers.glob("*.pth")):
            found[peer_name(path)] = load_peer(path)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", nargs="*", type=Path, help="more clips (default: ../shared/data/video/*)")
    parser.add_argument("--weights", type=Path, action="append", default=[], help="more vsr x4 weights files")
    parser.add_argument("--peers", type=Path, default=SHARED / "weights" / "peers",
                        help="folder of Real-ESRGAN .pth peers (missing: none)")
    parser.add_argument("--no-peers", action="store_true", help="skip the Real-ESRGAN peers")
    parser.add_argument("--no-shared", action="store_true", help="only the clips given, not ../shared/data/video")
    parser.add_argument("--frames", type=int, default=16, help="consecutive held-out frames per clip")
    parser.add_argument("--crop", default="256x192", help="centred HR crop WxH of each frame")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--out", type=Path, default=Path("runs/footage"), help="output folder")
    args = parser.parse_args()
    try:
        clips = list(args.clips)
        if not args.no_shared:
            clips += sorted(p for p in (SHARED / "video").glob("*") if p.suffix.lower() in video.VIDEO_EXTS)
        if not clips:
            raise VsrError("no clips: pass some, or put ../shared/data/video beside the repository")
        crop = tuple(int(v) for v in args.crop.lower().split("x"))
        model_list = default_models(args.weights, None if args.no_peers else args.peers)
        print(f"{len(clips)} clips x {args.frames} frames ({args.crop} crops), {len(CHAINS)} chains, "
              f"{len(model_list)} models", file=sys.stderr)
        result = run_benchmark(clips, model_list, args.frames, crop, args.seed, args.precision,
                               log=lambda line: print(line, file=sys.stderr))
    except VsrError as exc:
        sys.exit(f"Error: {exc}")
    args.out.mkdir(parents=True, exist_ok=True)
    picture_grid(result, args.out / "footage_grid.png")
    table = markdown_table(result)
    legend = "\n".join(f"- `{c}`: {d}" for c, d in result["chains"].items())
    cpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    header = (f"Footage benchmark: {', '.join(result['clips'])}; {args.frames} held-out frames each, {args.crop} "
              f"crops, seed {args.seed}, {cpu}; cells: Y-PSNR dB / SSIM / flicker (grey levels, lower is steadier)")
    (args.out / "footage.md").write_text(f"{header}\n\n{table}\n\n{legend}\n")
    saved = {k: v for k, v in result.items() if k != "grid"}
    (args.out / "footage.json").write_text(json.dumps(saved, indent=1))
    print(f"{header}\n\n{table}\n\n{legend}\n\nwrote {args.out}/footage.md, footage.json, footage_grid.png")


if __name__ == "__main__":
    main()
