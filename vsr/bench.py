"""`vsr bench`: decode-only, model-only, encode-only and end-to-end throughput, measured side by side in one run.

The end-to-end figure runs the real `enhance_video` on a generated H.264 clip, so its ratio to model-only fps says
how much the decode/encode threads and the queues cost. Two more figures put those in context:

* the machine's own bar: a bare 3x3 64->64 conv (channels_last, the run's precision and batch, at the input size)
  timed in the same run; model-only TFLOP/s as a fraction of it says how close the model runs to the convolution
  speed of this machine's matrix units;
* a naive loop (decode one frame, run the same model graph on it, encode it; one thread of control, the encoder's
  default threads), the baseline the pipeline has to beat.

Frames are 720x576 (a PAL DVD frame) by default, and the model gets what `vsr enhance` would give it: the batch
and tiles `vsr.pipeline.worksize` chooses for that size, model and machine (``batch_size`` forces a batch). A sweep
over sizes (:func:`run_sweep`) measures each in a fresh process, so each row's peak RSS is that size's own.

The clip is 256 frames at 160x120 by default, fewer for larger frames (the same number of pixels, at least 4). A run
pays fixed costs once: the first batch before anything overlaps, the
queued batches and x264's lookahead (40 frames at ``medium``) encoded after the model is done, ~1-1.5 s together
on a 2-vCPU Xeon at 640x480 out. On 32 frames that was a fifth of the time; in a real video of thousands of frames
it is nothing; at 256 frames (~30 s of model work there) it is a few percent. Model-only fps is timed twice on the same frames,
right before and right after the end-to-end run, and their mean (total frames / mean seconds) is the figure the
ratios use: on a shared host the speed drifts between minutes, and bracketing cancels a steady drift. The conv bar
is timed next to each of the two passes too, and averaged the same way.

Nothing here is asserted; it prints what it measured.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vsr import models, pipeline, video
from vsr.errors import VsrError
from vsr.pipeline.worksize import choose_work_size
from vsr.precision import choose_precision, resolve_device

# Frames of the clip for 160x120; larger frames get as many pixels (at least MIN_FRAMES frames).
BASE_FRAMES, MIN_FRAMES = 256, 4


def default_frames(width: int, height: int) -> int:
    """Frames of the generated clip: 256 at 160x120, the same number of pixels at other sizes, at least 4."""
    return max(MIN_FRAMES, min(BASE_FRAMES, round(BASE_FRAMES * 160 * 120 / (width * height))))


def synthetic_frames(count: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """Moving gradients, edges and noise: content an encoder and an SR model both have to work on."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    texture = rng.integers(0, 40, size=(height, width, 3), dtype=np.uint8)
    frames = np.empty((count, height, width, 3), dtype=np.uint8)
    for i in range(count):
        r = 127 + 127 * np.sin((xx + 3 * i) / 9.0)
        g = 127 + 127 * np.cos((yy - 2 * i) / 13.0)
        b = ((xx + yy + 5 * i) % 64) * 4.0
        frame = np.stack([r, g, b], axis=-1).astype(np.uint8)
        frame[(height // 3) : (height // 3 + 8), :] = 255 * ((xx[0] // 6 + i) % 2)[None, :, None].astype(np.uint8)
        frames[i] = np.clip(frame.astype(np.int16) + texture - 20, 0, 255).astype(np.uint8)
    return frames


def write_clip(path: Path, frames: np.ndarray, fps: int = 25, codec: str = "libx264") -> None:
    with video.VideoWriter(
        path, width=frames.shape[2], height=frames.shape[1], time_base=Fraction(1, fps), fps=Fraction(fps), codec=codec,
        crf=18, overwrite=True,
    ) as writer:
        writer.write(frames, list(range(len(frames))))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def conv_tflops(device: torch.device, dtype: torch.dtype, batch: int, height: int, width: int,
                repeats: int = 20) -> float:
    """TFLOP/s of a bare 3x3 64->64 conv (channels_last, ``dtype``) on (batch, 64, height, width): the bar."""
    with torch.inference_mode():
        x = torch.rand(batch, 64, height, width, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
        weight = torch.randn(64, 64, 3, 3, device=device).mul_(0.05).to(dtype)
        weight = weight.contiguous(memory_format=torch.channels_last)
        for _ in range(2):  # warm-up: kernel choice
            F.conv2d(x, weight, padding=1)
        _sync(device)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            F.conv2d(x, weight, padding=1)
            _sync(device)
            times.append(time.perf_counter() - start)
    return 2 * batch * height * width * 64 * 64 * 9 / float(np.median(times)) / 1e12


# Profiler op names -> the op types `--profile` reports.
_OP_TYPES = {
    "conv": ("conv", "mkldnn_convolution", "cudnn_convolution"),
    "PReLU": ("prelu",),
    "pixel_shuffle": ("pixel_shuffle",),
    "add": ("aten::add",),
    "copy / layout": ("copy_", "contiguous", "clone", "permute"),
    "cast / scale": ("aten::to", "_to_copy", "div", "mul", "clamp", "round"),
}


def op_shares(upscaler: pipeline.Upscaler, batch: torch.Tensor) -> dict[str, float]:
    """Share of the model call's op time per op type (self time of each op, from torch.profiler), largest first."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if upscaler.device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        upscaler(batch)
        _sync(upscaler.device)
    totals: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        us = event.self_device_time_total if upscaler.device.type == "cuda" else event.self_cpu_time_total
        kind = next((k for k, keys in _OP_TYPES.items() if any(key in event.key for key in keys)), "other")
        totals[kind] += us
    whole = sum(totals.values()) or 1.0
    return {k: round(v / whole, 3) for k, v in sorted(totals.items(), key=lambda kv: -kv[1]) if v / whole >= 0.001}


def model_only_seconds(upscaler: pipeline.Upscaler, batches: list[torch.Tensor]) -> tuple[float, list[torch.Tensor]]:
    """Seconds the model takes for ``batches`` (uint8 frames already on the device), and its outputs.

    The batches are consecutive frames of one clip from its start: a recurrent model starts afresh.
    """
    upscaler.reset_state()
    _sync(upscaler.device)
    start = time.perf_counter()
    outputs = [upscaler(batch) for batch in batches]
    _sync(upscaler.device)
    return time.perf_counter() - start, outputs


def naive_loop_fps(clip: Path, out: Path, upscaler: pipeline.Upscaler, scale: int, codec: str,
                   preset: str | None = None) -> float:
    """Frames/s of decode one frame -> model (batch 1) -> encode it, in one thread of control."""
    info = video.probe(clip)
    upscaler.reset_state()  # the clip from its start
    start = time.perf_counter()
    frames = 0
    with video.VideoWriter(out, width=info.width * scale, height=info.height * scale, time_base=info.time_base,
                           fps=info.fps, codec=codec, preset=preset, overwrite=True) as writer:
        for batch in video.read_frames(clip, 1):
            sr = upscaler(torch.from_numpy(batch.frames).to(upscaler.device))
            writer.write(sr.cpu().numpy(), batch.pts)
            frames += 1
    return frames / (time.perf_counter() - start)


def run_bench(
    model: str | None = "srresnet",
    weights: str | None = None,
    scale: int = 4,
    width: int = 720,
    height: int = 576,
    frames: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    batch_size: int | None = None,
    codec: str = "libx264",
    preset: str | None = None,
    profile: bool = False,
    naive: bool = True,
) -> dict:
    """Measures one configuration and returns a flat dict (the `--json` output).

    With `weights`, `model` only checks the file's architecture; None takes the file's own. ``preset`` is the
    encoder preset of every encode (encode-only, end to end, naive); None is what `vsr enhance` uses by default. ``profile`` adds
    ``op_shares`` (share of model time per op type); ``naive`` times the naive per-frame loop too. ``frames`` None:
    :func:`default_frames`; ``batch_size`` None: the batch (and tiles) `vsr enhance` would choose.
    """
    dev = resolve_device(device)
    if weights:
        net = models.load_model(weights, scale=scale, arch=model if model in models.list_models() else None)
        model = model or Path(weights).stem
        weights_note = str(weights)
    else:
        # Speed does not depend on the weight values: a randomly initialised, BN-folded net times the same.
        net = models.fold_batchnorm(models.build_model(model, scale=scale).eval())
        weights_note = "random init (timing only)"
    prec = choose_precision(precision, dev, getattr(net, "meta", None))
    upscaler = pipeline.Upscaler(net, dev, prec)
    frames = frames or default_frames(width, height)
    # What enhance runs: its choice of batch and tiles for this size (enhance's queues counted as it counts them).
    work, _ = choose_work_size(upscaler.model, height=height, width=width, device=dev,
                               value_bytes=upscaler.dtype.itemsize, queued_batches=10, batch=batch_size,
                               graph=upscaler.graph)
    batch_size, upscaler.tile, upscaler.tile_pad = min(work.batch, frames), work.tile, work.tile_pad
    clip_frames = synthetic_frames(frames, width, height)
    result = {
        "model": model,
        "weights": weights_note,
        "scale": scale,
        "size": f"{width}x{height}",
        "out_size": f"{width * scale}x{height * scale}",
        "frames": frames,
        "batch_size": batch_size,
        "tile": work.tile,
        "work": work.describe(),
        "device": str(dev),
        "precision": prec.name,
        "precision_reason": prec.reason,
        "threads": torch.get_num_threads(),
        "codec": codec,
        "preset": preset,
        "gflops_per_frame": round(models.count_flops(net, height, width) / 1e9, 3),
    }
    with tempfile.TemporaryDirectory(prefix="vsr-bench-") as tmp:
        clip = Path(tmp) / "bench.mp4"
        write_clip(clip, clip_frames)

        start = time.perf_counter()
        decoded = sum(len(batch.pts) for batch in video.read_frames(clip, batch_size))
        result["decode_fps"] = decoded / (time.perf_counter() - start)

        batches = [torch.from_numpy(clip_frames[i : i + batch_size]).to(dev) for i in range(0, frames, batch_size)]
        # Warm-up: allocator, page faults of the first activations, oneDNN/cuDNN kernel choice. One call of a large
        # frame already costs seconds and does all of it.
        for batch in batches[: 2 if batch_size * width * height < 2**20 else 1]:
            upscaler(batch)
        model_seconds, outputs = model_only_seconds(upscaler, batches)
        result["model_fps_before"] = frames / model_seconds
        conv_before = conv_tflops(dev, upscaler.dtype, batch_size, height, width)
        if profile:
            result["op_shares"] = op_shares(upscaler, batches[0])

        upscaled = np.concatenate([out.cpu().numpy() for out in outputs])
        start = time.perf_counter()
        with video.VideoWriter(
            Path(tmp) / "encode_only.mp4", width=width * scale, height=height * scale, time_base=Fraction(1, 25),
            fps=Fraction(25), codec=codec, preset=preset, overwrite=True,
        ) as writer:
            for i in range(0, frames, batch_size):
                writer.write(upscaled[i : i + batch_size], list(range(i, min(i + batch_size, frames))))
        result["encode_fps"] = frames / (time.perf_counter() - start)
        del outputs, upscaled

        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        cfg = pipeline.EnhanceConfig(batch_size=batch_size, tile=work.tile, tile_pad=work.tile_pad, device=str(dev),
                                     precision=prec.name, codec=codec, preset=preset)
        run = pipeline.enhance_video(clip, Path(tmp) / "out.mp4", net, cfg)
        result["end_to_end_fps"] = run.frames_out / run.seconds
        seconds_after, _ = model_only_seconds(upscaler, batches)
        result["model_fps_after"] = frames / seconds_after
        result["model_fps"] = frames / ((model_seconds + seconds_after) / 2)
        # The bar gets the same treatment as the model: timed next to each model-only pass, mean of the times.
        conv_after = conv_tflops(dev, upscaler.dtype, batch_size, height, width)
        result["conv_tflops"] = 2 / (1 / conv_before + 1 / conv_after)
        result["conv_tflops_before"], result["conv_tflops_after"] = conv_before, conv_after
        result["model_tflops"] = result["gflops_per_frame"] * result["model_fps"] / 1000
        result["model_over_conv"] = result["model_tflops"] / result["conv_tflops"]
        if naive:
            # The naive loop runs whole frames one by one, as a loop written without vsr's choice would.
            upscaler.tile = 0
            result["naive_fps"] = naive_loop_fps(clip, Path(tmp) / "naive.mp4", upscaler, scale, codec, preset)
            result["e2e_over_naive"] = result["end_to_end_fps"] / result["naive_fps"]
    result["e2e_over_model"] = result["end_to_end_fps"] / result["model_fps"]
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if dev.type == "cuda":
        result["peak_vram_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    for key in ("decode_fps", "model_fps", "model_fps_before", "model_fps_after", "encode_fps", "end_to_end_fps",
                "e2e_over_model", "peak_rss_mb", "conv_tflops", "conv_tflops_before", "conv_tflops_after",
                "model_tflops", "model_over_conv", "naive_fps", "e2e_over_naive"):
        if key in result:
            result[key] = round(result[key], 3)
    return result


def run_sweep(sizes, models_: list[str | None] | None = None, threads: int | None = None, **options) -> list[dict]:
    """`run_bench` for every model and size, each in a fresh process (``python -m vsr bench --json``), so that each
    row's peak RSS is its own and no size inherits another's heap. ``options`` are `run_bench`'s, by name."""
    results = []
    for model in models_ or [None]:
        for width, height in sizes:
            args = [sys.executable, "-m", "vsr", "bench", "--json", "--size", f"{width}x{height}"]
            args += ["-m", model] if model else []
            args += ["--threads", str(threads)] if threads else []
            for key, value in options.items():
                if key == "naive":
                    args += [] if value else ["--no-naive"]
                elif key == "profile":
                    args += ["--profile"] if value else []
                elif value is not None:
                    args += ["--" + key.replace("_", "-"), str(value)]
            proc = subprocess.run(args, capture_output=True, text=True)
            if proc.returncode != 0:
                last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                raise VsrError(f"bench of {model or 'the model'} at {width}x{height} failed: {last}")
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return results


def format_table(results: list[dict], extra: list[tuple[str, str]] = ()) -> str:
    """One row per measured configuration; `extra` adds (key, header) columns."""
    columns = [
        ("model", "model"), ("scale", "x"), ("size", "in"), ("device", "device"), ("precision", "prec"),
        ("batch_size", "batch"), ("tile", "tile"), ("gflops_per_frame", "GFLOP/f"), ("decode_fps", "decode fps"),
        ("model_fps", "model fps"), ("model_tflops", "model TF/s"), ("conv_tflops", "conv TF/s"),
        ("model_over_conv", "model/conv"), ("encode_fps", "encode fps"), ("end_to_end_fps", "e2e fps"),
        ("e2e_over_model", "e2e/model"), ("naive_fps", "naive fps"), ("e2e_over_naive", "e2e/naive"),
        ("peak_rss_mb", "RSS MB"), *extra,
    ]
    rows = [[h for _, h in columns]] + [[_fmt(r.get(k)) for k, _ in columns] for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_shares(result: dict) -> str:
    """The ``op_shares`` of a result as one line: "model time by op: conv 82.0 %, PReLU 16.1 %, ..."."""
    shares = result.get("op_shares") or {}
    return "model time by op: " + ", ".join(f"{k} {100 * v:.1f} %" for k, v in shares.items())


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.2f}" if value < 100 else f"{value:.0f}"
    return "" if value is None else str(value)
