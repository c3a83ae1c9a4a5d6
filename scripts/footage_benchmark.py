#!/usr/bin/env python
"""The footage benchmark: how each model restores runs of consecutive frames of real clips through recorder chains.

    scripts/footage_benchmark.py                                   # the held-out clip, every model, every chain
    scripts/footage_benchmark.py --set all --no-peers              # + the in-scene clips (../shared/data/video)
    scripts/footage_benchmark.py --weights runs/new/export.pt --models bicubic,srresnet_real_x4   # score a candidate
    scripts/footage_benchmark.py --weights runs/new/export.pt --models none --with docs/footage_heldout.json
    scripts/footage_benchmark.py my_dvr.avi --set none --frames 16 --out runs/footage

Clips, in sets scored and tabled apart: ``held-out`` is ``../shared/data/video_validation`` (never trained on: the
fair yardstick), ``in-scene`` the files of ``../shared/data/video`` (training material: ``srresnet_real_x4`` trained
on the first 80 % of the pets and Chaplin clips), ``given`` the clips on the command line.

Frames: a run of ``--frames`` consecutive frames, plus the ``--lead-in`` frames before it: in a held-out clip the
run where it changes most, in the others the start of its held-out end (its last 20 %, which `vsr prepare --holdout
0.2` never gives the trainer); all cropped to the ``--crop`` window where the run moves most (a temporal benchmark of
still asphalt says nothing), mod-cropped to the scale. Each chain below is a fixed, seeded `vsr.data.Degradation`
run over lead-in and run as one piece of footage (real codecs through PyAV: libx264, mpeg2video, swscale, bwdif), so
the LR is the same for every model.

Models see the frames as `vsr enhance` gives them: consecutive, in presentation order, 4 at a time, with
``Upscaler.reset_state()`` before each clip and chain. A recurrent model (``model.recurrent``) is first given the
lead-in, unscored, so it is scored at its steady state as in the middle of a video; per-frame models need none.

Scores on the run, on the BT.601 Y channel with a 4-pixel border: PSNR, SSIM, and the temporal error against the
original, tErr = RMS of (sr_t - sr_t-1) - (hr_t - hr_t-1) in grey levels (0: the output changes exactly as the
original; it grows for flicker and for real motion blurred away). The secondary "flicker" is the mean |...| of the
same difference, the figure earlier tables printed.

Models: bicubic, every shipped x4 weights file, ``--weights`` files (any arch `vsr.load_model` knows, recurrent ones
included), and the Real-ESRGAN peers in ``../shared/data/weights/peers`` (`realesrgan_peers.py`); ``--models`` keeps
only the named ones besides the ``--weights`` files (``none``: only those); ``--with OLD/footage.json`` adds the rows
of an earlier run with the same settings (``docs/footage_heldout.json``, ``docs/footage_inscene.json``: the shipped
models' runs) without running them again. Writes ``OUT/footage.md`` (the tables), ``OUT/footage.json`` and
``OUT/footage_grid.png`` (crops of the middle frame of the H.264 CRF 28 chain: LR, bicubic, every model run, original,
labelled with crop PSNR).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from contextlib import closing
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's vsr, not an installed one
sys.path.insert(0, str(Path(__file__).resolve().parent))

from footage_report import markdown_tables, mean_present, picture_grid, report  # noqa: E402
from realesrgan_peers import RRDBNet, SRVGGNetCompact, load_peer, peer_name  # noqa: E402
from vsr import data, metrics, models, video  # noqa: E402
from vsr.errors import VsrError  # noqa: E402
from vsr.pipeline import Upscaler  # noqa: E402
from vsr.precision import choose_precision, resolve_device  # noqa: E402

# Re-exported: the tests and other scripts take everything from this module.
__all__ = ["RRDBNet", "SRVGGNetCompact", "load_peer", "peer_name", "markdown_tables", "picture_grid", "report"]

SCALE = 4
BATCH = 4  # frames per model call, as `vsr enhance` batches them
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = {"held-out": SHARED / "video_validation", "in-scene": SHARED / "video"}
HOLDOUT = 0.2  # the fraction `vsr prepare --holdout` keeps from training, taken from each clip's end
# Every stage off; each recorder chain switches on what its recorder does. Values are fixed, so only the seeded
# noise and the codecs' own decisions vary, and those are fixed by the seed.
_OFF = dict(blur_sigma=(0.0, 0.0), noise_sigma=(0.0, 0.0), poisson_prob=0.0, camera_noise_prob=0.0,
            interlace_prob=0.0, chroma_prob=0.0, jpeg_prob=0.0, video_prob=0.0, mpeg2_prob=0.0,
            second_order_prob=0.0, codec_preset="veryfast")
CLEAN = "clean_x4"  # the SR papers' LR: antialiased bicubic, no codec; not a recorder, so not in the recorder mean
CHAINS: dict[str, tuple[str, dict | None]] = {
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
    CLEAN: ("x4 antialiased bicubic downscale, no codec (the SR papers' LR)", None),
}
GRID_CHAIN = "h264_crf28"
KEYS = ("psnr", "ssim", "terr", "flicker")


# ------------------------------------------------------------------------------------------------ frames and chains
def chain(name: str) -> data.Degradation:
    overrides = CHAINS[name][1]
    return data.Degradation("bicubic") if overrides is None else data.Degradation("realistic", **{**_OFF, **overrides})


def motion_crop(frames: np.ndarray, crop: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the ``crop`` (w, h) window, on a 16-px grid, where the frames change most.

    Change is the sum over pairs of consecutive frames of |Y_t - Y_t-1|; ties go to the window nearest the centre,
    so a still clip gets the centred crop.
    """
    h, w = frames.shape[1:3]
    cw, ch = min(crop[0], w) // SCALE * SCALE, min(crop[1], h) // SCALE * SCALE
    ys = np.stack([metrics.rgb_to_y(f) for f in frames])
    change = np.abs(np.diff(ys, axis=0)).sum(axis=0) if len(ys) > 1 else np.zeros((h, w))
    table = np.pad(change.cumsum(0).cumsum(1), ((1, 0), (1, 0)))  # summed-area table: any window in four reads
    step = 4 * SCALE
    best = None
    for top in sorted({*range(0, h - ch + 1, step), (h - ch) // 2 // SCALE * SCALE}):
        for left in sorted({*range(0, w - cw + 1, step), (w - cw) // 2 // SCALE * SCALE}):
            total = table[top + ch, left + cw] - table[top, left + cw] - table[top + ch, left] + table[top, left]
            key = (round(float(total), 6), -abs(top - (h - ch) / 2) - abs(left - (w - cw) / 2))
            if best is None or key > best[0]:
                best = (key, top, left)
    return best[1], best[2], ch, cw


def _frame_changes(clip: Path) -> list[float]:
    """Mean |Y_t - Y_t-1| of each frame against the one before (0 for the first), on 8x-subsampled frames."""
    changes, previous = [], None
    with closing(video.read_frames(clip)) as batches:
        for batch in batches:
            for frame in batch.frames:
                y = metrics.rgb_to_y(frame[::8, ::8])
                changes.append(0.0 if previous is None else float(np.mean(np.abs(y - previous))))
                previous = y
    return changes


def clip_run(clip: Path, count: int, crop: tuple[int, int], lead_in: int = 0,
             busiest: bool = False) -> tuple[np.ndarray, int, int]:
    """The clip's run: ``count`` consecutive frames after up to ``lead_in`` frames before them, all cropped to the
    ``crop`` (w, h) window where the scored frames move most (`motion_crop`).

    Args:
        busiest: Start the run where the clip changes most over ``count`` frames (a clip no model trained on: the
            validation clip) instead of at the start of its held-out end (its last 20 %, which `vsr prepare
            --holdout 0.2` never gives the trainer).

    Returns:
        ((lead + count, h, w, 3) uint8 frames in presentation order, lead = how many of them are lead-in, the index
        of the first scored frame in the clip).
    """
    if busiest:
        changes = _frame_changes(clip)
        sums = [sum(changes[i + 1 : i + count]) for i in range(max(1, len(changes) - count + 1))]
        start = int(np.argmax(sums))
    else:
        total = video.probe(clip).frames
        if not total:
            with closing(video.read_frames(clip)) as batches:
                total = sum(len(b.frames) for b in batches)
        start = total - max(1, round(total * HOLDOUT))
    first = max(0, start - lead_in)
    frames: list[np.ndarray] = []
    index = 0
    with closing(video.read_frames(clip)) as batches:
        for batch in batches:
            for frame in batch.frames:
                if index >= first and len(frames) < start - first + count:
                    frames.append(frame)
                index += 1
            if len(frames) >= start - first + count:
                break
    lead = min(start - first, len(frames))
    if len(frames) <= lead:
        raise VsrError(f"{clip}: no frames from frame {start} on")
    stack = np.stack(frames)
    top, left, ch, cw = motion_crop(stack[lead:], crop)
    return np.ascontiguousarray(stack[:, top : top + ch, left : left + cw]), lead, start


def clip_seed(seed: int, chain_name: str, clip: str) -> np.random.Generator:
    """The chain's noise for one clip: fixed by the seed, the chain and the clip's name, whatever else is run."""
    return np.random.default_rng([seed, list(CHAINS).index(chain_name), zlib.crc32(clip.encode())])


# ------------------------------------------------------------------------------------------------ scoring
def _upscaler(model: nn.Module | None, precision: str) -> Upscaler | None:
    if model is None:
        return None  # bicubic: the protocol's Pillow bicubic (a = -0.5), as `vsr eval -m bicubic`
    device = resolve_device("cpu" if not torch.cuda.is_available() else "auto")
    return Upscaler(model, device, choose_precision(precision, device, getattr(model, "meta", None)))


def upscale_run(upscaler: Upscaler | None, lr: np.ndarray, lead: int, recurrent: bool) -> np.ndarray:
    """Upscales one clip's LR run in presentation order, from a fresh state; returns the output of the scored part.

    A recurrent model is given the ``lead`` lead-in frames first (their output is dropped); a per-frame model only
    the scored frames, whose output would not change.
    """
    if upscaler is None:
        return np.stack([data.bicubic_upscale(f, SCALE) for f in lr[lead:]])
    upscaler.reset_state()
    skip = lead if recurrent else 0
    frames = lr[lead - skip :]
    out = [upscaler(torch.from_numpy(frames[i : i + BATCH]).to(upscaler.device)).cpu().numpy()
           for i in range(0, len(frames), BATCH)]
    return np.concatenate(out)[skip:]


def score(sr: np.ndarray, hr: np.ndarray) -> dict:
    """Mean Y PSNR/SSIM over frames, and tErr and flicker over the run, of (N,H,W,3) output against the original."""
    pairs = [metrics.psnr_ssim_y(s, h, SCALE) for s, h in zip(sr, hr)]
    temporal = metrics.TemporalError(SCALE)
    for s, h in zip(sr, hr):
        temporal.update(metrics.rgb_to_y(s), metrics.rgb_to_y(h))
    return {"psnr": float(np.mean([p for p, _ in pairs])), "ssim": float(np.mean([s for _, s in pairs])),
            "terr": temporal.rms, "flicker": temporal.flicker}


def run_benchmark(clip_sets: dict[str, list[Path]], model_list: dict[str, nn.Module | None], frames: int = 40,
                  crop: tuple[int, int] = (256, 192), seed: int = 0, precision: str = "auto",
                  chains: list[str] | None = None, lead_in: int = 16, log=print) -> dict:
    """Scores every model on every chain of every clip.

    Args:
        clip_sets: Set name ("held-out", "in-scene", "given") -> video files; each set gets its own table.
        model_list: Display name -> x4 module (None = bicubic).
        frames, crop, seed, precision, lead_in: As the command's options.
        chains: Names from :data:`CHAINS` (default all).
        log: Called with progress lines.

    Returns:
        {"chains": {name: description}, "recorder_chains": [the chains but the clean one], "sets": {set: [clip
        names]}, "frames", "start": {clip: first scored frame}, "lead_in": {clip: frames}, "crop", "seed",
        "precision": {model: name}, "scores": {set: {model: {chain: {"psnr", "ssim", "terr", "flicker"}}}} (means
        over the set's clips, each weighted equally), "per_clip": {model: {chain: {clip: score}}}, "seconds":
        {model: s}, "grid": picture data}.
    """
    chains = chains or list(CHAINS)
    originals, leads, starts, set_of = {}, {}, {}, {}
    for set_name, clips in clip_sets.items():
        for clip in clips:
            if clip.name in set_of:
                raise VsrError(f"two clips named {clip.name}")
            originals[clip.name], leads[clip.name], starts[clip.name] = clip_run(clip, frames, crop, lead_in,
                                                                                  set_name == "held-out")
            set_of[clip.name] = set_name
    degraded = {(c, name): chain(c).degrade_clip(hr, SCALE, clip_seed(seed, c, name))
                for c in chains for name, hr in originals.items()}
    per_clip: dict = {}
    seconds, precisions = {}, {}
    grid = {"lr": {}, "hr": {}, "sr": {}}
    for name, model in model_list.items():
        upscaler = _upscaler(model, precision)
        recurrent = bool(getattr(model, "recurrent", False))
        precisions[name] = upscaler.precision.name if upscaler else "fp32"
        started = time.perf_counter()
        for c in chains:
            for clip, run in originals.items():
                lead, lr = leads[clip], degraded[(c, clip)]
                sr = upscale_run(upscaler, lr, lead, recurrent)
                hr = run[lead:]
                per_clip.setdefault(name, {}).setdefault(c, {})[clip] = score(sr, hr)
                if c == GRID_CHAIN:
                    grid["sr"].setdefault(clip, {})[name] = sr[len(sr) // 2]
                    grid["lr"][clip], grid["hr"][clip] = lr[lead + len(sr) // 2], hr[len(sr) // 2]
        seconds[name] = time.perf_counter() - started
        log(f"{name}: {seconds[name]:.0f} s ({precisions[name]}{', recurrent' if recurrent else ''})")
    scores = {set_name: {name: {c: {k: mean_present([per_clip[name][c][clip][k] for clip in clips]) for k in KEYS}
                                for c in chains} for name in model_list}
              for set_name, clips in ((s, [c.name for c in clips]) for s, clips in clip_sets.items()) if clips}
    return {"chains": {c: CHAINS[c][0] for c in chains}, "recorder_chains": [c for c in chains if c != CLEAN],
            "sets": {s: [c.name for c in clips] for s, clips in clip_sets.items() if clips}, "frames": frames,
            "start": starts, "lead_in": leads, "crop": list(crop), "seed": seed, "precision": precisions,
            "scores": scores, "per_clip": per_clip, "seconds": seconds, "grid": grid}


def merge_results(previous: dict, result: dict) -> dict:
    """``result`` with the rows of an earlier run's ``footage.json`` first, in their order (a model run again gets its
    new row in its old place), then the models new in ``result``.

    Raises:
        VsrError: the runs differ in what they scored (clips, frames, crops, seed, chains), so rows would not compare.
    """
    same = ("chains", "sets", "frames", "start", "lead_in", "crop", "seed")
    if differ := [k for k in same if previous.get(k) != json.loads(json.dumps(result[k]))]:
        raise VsrError(f"the earlier run scored other frames or chains ({', '.join(differ)} differ); rerun it")
    merged = dict(result)
    for key in ("precision", "per_clip", "seconds"):
        merged[key] = {**previous[key], **result[key]}  # dict update keeps the first insertion's place
    merged["scores"] = {s: {**previous["scores"][s], **result["scores"][s]} for s in result["scores"]}
    return merged


def default_models(weights: list[Path], peers: Path | None, only: list[str] | None = None) -> dict:
    """Display name -> x4 module (None = bicubic): bicubic, the shipped x4 weights, ``weights`` files (named by
    their stem), then the peers (if the folder exists). With ``only``, just those names, in that order, and the
    ``weights`` files: a file named on the command line is always scored."""
    paths = {p.stem: p for p in sorted(models.weights_dir().glob("*_x4.pt"))}
    given = []
    for path in weights:
        if not path.is_file():
            raise VsrError(f"no such weights file: {path}")
        name = next((n for n, p in paths.items() if p.resolve() == path.resolve()), None)
        if name is None:
            name = path.stem if path.stem not in paths else str(path)
            paths[name] = path
        given.append(name)
    peer_paths = {peer_name(p): p for p in sorted(peers.glob("*.pth"))} if peers is not None and peers.is_dir() else {}
    names = ["bicubic", *paths, *peer_paths]
    if only is not None:
        unknown = [n for n in only if n not in names]
        if unknown:
            raise VsrError(f"no model named {', '.join(unknown)}; known: {', '.join(names)}")
        names = [*only, *(n for n in given if n not in only)]
    return {n: None if n == "bicubic" else load_peer(peer_paths[n]) if n in peer_paths
            else models.load_model(paths[n], device="cpu") for n in names}


def clip_sets(given: list[Path], which: str) -> dict[str, list[Path]]:
    """The clips of each set: ``which`` is held-out, in-scene, all (both) or none (only the given clips)."""
    chosen = {"held-out": ["held-out"], "in-scene": ["in-scene"], "all": list(SETS), "none": []}[which]
    found = {s: sorted(p for p in SETS[s].glob("*") if p.is_file() and p.suffix.lower() in video.VIDEO_EXTS)
             for s in chosen if SETS[s].is_dir()}
    found["given"] = list(given)
    if not any(found.values()):
        raise VsrError(f"no clips: pass some, or put the shared data beside the repository ({SHARED})")
    return {s: clips for s, clips in found.items() if clips}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", nargs="*", type=Path, help="more clips, tabled as the set 'given'")
    parser.add_argument("--set", dest="which", default="held-out", choices=["held-out", "in-scene", "all", "none"],
                        help="shared clips to score (default: held-out, the validation clip)")
    parser.add_argument("--weights", type=Path, action="append", default=[], help="more vsr x4 weights files")
    parser.add_argument("--models", default=None,
                        help="comma-separated names to score besides --weights files, e.g. bicubic,srresnet_real_x4; "
                        "none: only the --weights files (default: all)")
    parser.add_argument("--peers", type=Path, default=SHARED / "weights" / "peers",
                        help="folder of Real-ESRGAN .pth peers (missing: none)")
    parser.add_argument("--no-peers", action="store_true", help="skip the Real-ESRGAN peers")
    parser.add_argument("--chains", default=None, help=f"comma-separated chains (default all: {','.join(CHAINS)})")
    parser.add_argument("--frames", type=int, default=40, help="consecutive frames scored per clip")
    parser.add_argument("--lead-in", type=int, default=16, help="frames before them that recurrent models see first")
    parser.add_argument("--crop", default="256x192", help="HR crop WxH of each frame, where the clip moves most")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--with", dest="previous", type=Path, default=None,
                        help="footage.json of an earlier run with the same settings: its rows join the tables")
    parser.add_argument("--out", type=Path, default=Path("runs/footage"), help="output folder")
    args = parser.parse_args()
    try:  # read before the long run, so a wrong path fails at once
        previous = json.loads(args.previous.read_text()) if args.previous else None
    except (OSError, ValueError) as exc:
        sys.exit(f"Error: --with {args.previous}: {exc}")
    try:
        if args.frames < 2 or args.lead_in < 0:
            raise VsrError("--frames must be at least 2 (a temporal error needs two) and --lead-in at least 0")
        chains = args.chains.split(",") if args.chains else list(CHAINS)
        if unknown := [c for c in chains if c not in CHAINS]:
            raise VsrError(f"unknown chain {', '.join(unknown)}; choose from {', '.join(CHAINS)}")
        try:
            crop = tuple(int(v) for v in args.crop.lower().split("x"))
            assert len(crop) == 2 and min(crop) >= 4 * SCALE
        except (ValueError, AssertionError):
            raise VsrError(f"--crop must be WxH, at least {4 * SCALE}x{4 * SCALE}, got {args.crop}") from None
        sets = clip_sets(args.clips, args.which)
        only = [n.strip() for n in args.models.split(",") if n.strip() != "none"] if args.models else None
        model_list = default_models(args.weights, None if args.no_peers else args.peers, only)
        if not model_list:
            raise VsrError("no models to score: --models none needs --weights FILE")
        print(f"{sum(map(len, sets.values()))} clips x {args.frames} frames ({args.crop} crops), {len(chains)} chains, "
              f"{len(model_list)} models", file=sys.stderr)
        result = run_benchmark(sets, model_list, args.frames, crop, args.seed, args.precision, chains, args.lead_in,
                               log=lambda line: print(line, file=sys.stderr))
        if previous is not None:
            result = merge_results(previous, result)
    except VsrError as exc:
        sys.exit(f"Error: {exc}")
    args.out.mkdir(parents=True, exist_ok=True)
    picture_grid(result, args.out / "footage_grid.png")
    text = report(result, torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU")
    (args.out / "footage.md").write_text(text)
    saved = {k: v for k, v in result.items() if k != "grid"}
    (args.out / "footage.json").write_text(json.dumps(saved, indent=1))
    print(f"{text}\nwrote {args.out}/footage.md, footage.json, footage_grid.png")


if __name__ == "__main__":
    main()
