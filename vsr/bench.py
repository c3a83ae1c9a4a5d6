"""`vsr bench`: decode-only, model-only, encode-only and end-to-end throughput, measured side by side in one run.

The end-to-end figure runs the real `enhance_video` on a generated H.264 clip, so its ratio to model-only fps says
how much the decode/encode threads and the queues cost. Nothing here is asserted; it prints what it measured.
"""

from __future__ import annotations

import resource
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from vsr import models, pipeline, video
from vsr.precision import choose_precision, resolve_device


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


def run_bench(
    model: str | None = "srresnet",
    weights: str | None = None,
    scale: int = 4,
    width: int = 160,
    height: int = 120,
    frames: int = 32,
    device: str = "auto",
    precision: str = "auto",
    batch_size: int = 4,
    codec: str = "libx264",
) -> dict:
    """Measures one configuration and returns a flat dict (the `--json` output).

    With `weights`, `model` only checks the file's architecture; None takes the file's own.
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
    clip_frames = synthetic_frames(frames, width, height)
    result = {
        "model": model,
        "weights": weights_note,
        "scale": scale,
        "size": f"{width}x{height}",
        "out_size": f"{width * scale}x{height * scale}",
        "frames": frames,
        "batch_size": batch_size,
        "device": str(dev),
        "precision": prec.name,
        "precision_reason": prec.reason,
        "threads": torch.get_num_threads(),
        "codec": codec,
        "gflops_per_frame": round(models.count_flops(net, height, width) / 1e9, 3),
    }
    with tempfile.TemporaryDirectory(prefix="vsr-bench-") as tmp:
        clip = Path(tmp) / "bench.mp4"
        write_clip(clip, clip_frames)

        start = time.perf_counter()
        decoded = sum(len(batch.pts) for batch in video.read_frames(clip, batch_size))
        result["decode_fps"] = decoded / (time.perf_counter() - start)

        batches = [torch.from_numpy(clip_frames[i : i + batch_size]).to(dev) for i in range(0, frames, batch_size)]
        for batch in batches[:2]:  # warm-up: allocator, oneDNN/cuDNN kernel choice
            upscaler(batch)
        _sync(dev)
        start = time.perf_counter()
        outputs = [upscaler(batch) for batch in batches]
        _sync(dev)
        result["model_fps"] = frames / (time.perf_counter() - start)

        upscaled = np.concatenate([out.cpu().numpy() for out in outputs])
        start = time.perf_counter()
        with video.VideoWriter(
            Path(tmp) / "encode_only.mp4", width=width * scale, height=height * scale, time_base=Fraction(1, 25),
            fps=Fraction(25), codec=codec, overwrite=True,
        ) as writer:
            for i in range(0, frames, batch_size):
                writer.write(upscaled[i : i + batch_size], list(range(i, min(i + batch_size, frames))))
        result["encode_fps"] = frames / (time.perf_counter() - start)
        del outputs, upscaled

        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        cfg = pipeline.EnhanceConfig(batch_size=batch_size, device=str(dev), precision=prec.name, codec=codec)
        run = pipeline.enhance_video(clip, Path(tmp) / "out.mp4", net, cfg)
        result["end_to_end_fps"] = run.frames_out / run.seconds
    result["e2e_over_model"] = result["end_to_end_fps"] / result["model_fps"]
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if dev.type == "cuda":
        result["peak_vram_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    for key in ("decode_fps", "model_fps", "encode_fps", "end_to_end_fps", "e2e_over_model", "peak_rss_mb"):
        result[key] = round(result[key], 3)
    return result


def format_table(results: list[dict], extra: list[tuple[str, str]] = ()) -> str:
    """One row per measured configuration; `extra` adds (key, header) columns."""
    columns = [
        ("model", "model"), ("scale", "x"), ("size", "in"), ("device", "device"), ("precision", "prec"),
        ("batch_size", "batch"), ("gflops_per_frame", "GFLOP/f"), ("decode_fps", "decode fps"),
        ("model_fps", "model fps"), ("encode_fps", "encode fps"), ("end_to_end_fps", "e2e fps"),
        ("e2e_over_model", "e2e/model"), ("peak_rss_mb", "RSS MB"), *extra,
    ]
    rows = [[h for _, h in columns]] + [[_fmt(r.get(k)) for k, _ in columns] for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.2f}" if value < 100 else f"{value:.0f}"
    return "" if value is None else str(value)
