"""`vsr info FILE`: what a media file is (streams, interlacing, pixel aspect, duration) and, for vsr's outputs, what
made it (the provenance keys of `vsr.provenance`)."""

from __future__ import annotations

from pathlib import Path

from vsr import provenance, video
from vsr.errors import VsrError
from vsr.video.tags import read_tags

_GENERATIVE_NOTE = {
    "yes": "yes (trained with an adversarial loss: fine detail may be invented, not recovered from the source)",
    "no": "no (trained on pixel error: detail is estimated from the source, not invented)",
    "unknown": "unknown (weights from elsewhere that do not say; vsr enhance --generative yes|no records it)",
}


def read_provenance(path: str | Path) -> dict[str, str]:
    """vsr's provenance keys stored in a video's container tags or an image's text chunks / EXIF / XMP ({} if none).

    Raises:
        VsrError: the file does not exist or cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise VsrError(f"no such file: {path}")
    if path.suffix.lower() in video.IMAGE_EXTS:
        return _image_provenance(path)
    return provenance.from_tags(read_tags(path))


def _image_provenance(path: Path) -> dict[str, str]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            # PNG text chunks after the pixels are only read with them: .text loads the image for that.
            text = im.text if hasattr(im, "text") else im.info
            found = provenance.from_tags({k: v for k, v in text.items() if isinstance(v, str)})
            found = found or provenance.parse_xmp(im.info.get("xmp"))
            return found or provenance.parse_summary(str(im.getexif().get(0x010E, "")))
    except (UnidentifiedImageError, OSError) as err:
        raise VsrError(f"cannot read image {path}: {err}") from None


def describe(path: str | Path) -> list[str]:
    """The lines `vsr info` prints for ``path``.

    Raises:
        VsrError: a missing or unreadable file.
    """
    path = Path(path)
    if not path.is_file():
        raise VsrError(f"no such file: {path}")
    lines = _describe_image(path) if path.suffix.lower() in video.IMAGE_EXTS else _describe_video(path)
    found = read_provenance(path)
    if not found:
        lines.append("made by vsr: no (no vsr provenance tags in this file)")
        return lines
    lines.append(f"made by vsr {found.get('version', '?')}:")
    model = found.get("model", "?")
    arch = f" ({found['arch']})" if found.get("arch") and found.get("arch") != model else ""
    lines.append(f"  model: {model}{arch}, x{found.get('scale', '?')}, {found.get('precision', '?')}")
    lines.append(f"  weights SHA-256: {found.get('weights_sha256', '?')}")
    generative = found.get("generative", "unknown")
    lines.append(f"  generative: {_GENERATIVE_NOTE.get(generative, generative)}")
    return lines


def _describe_video(path: Path) -> list[str]:
    info = video.probe(path)
    duration = f"{info.duration:.3f} s" if info.duration is not None else "duration unknown"
    lines = [f"{path.name}: {info.container}, {duration}"]
    fps = f"{float(info.fps):.3f}".rstrip("0").rstrip(".") + " fps" if info.fps else "variable/unknown rate"
    interlaced = {"flagged": "interlaced (flagged per frame)", "tff": "interlaced, top field first",
                  "bff": "interlaced, bottom field first"}.get(info.interlaced, "progressive")
    sar = f"SAR {info.sample_aspect_ratio.numerator}:{info.sample_aspect_ratio.denominator}" \
        if info.sample_aspect_ratio else "SAR 1:1"
    details = [f"{info.width}x{info.height}", info.codec, info.pix_fmt, f"{info.bit_depth}-bit", fps, interlaced, sar,
               f"{info.frames} frames" if info.frames else None,
               f"rotated {info.rotation} deg" if info.rotation else None, info.color_space]
    lines.append("  video: " + ", ".join(d for d in details if d))
    for stream in info.streams:
        if stream.type == "video":
            continue
        extra = ", ".join(x for x in (stream.language, stream.title and f"'{stream.title}'") if x)
        lines.append(f"  stream #{stream.index}: {stream.type} {stream.codec}" + (f" ({extra})" if extra else ""))
    others = {k: v for k, v in read_tags(path).items()
              if not provenance.from_tags({k: v}) and k not in ("major_brand", "minor_version", "compatible_brands")}
    if others:
        lines.append("  tags: " + ", ".join(f"{k}={v}" for k, v in others.items()))
    return lines


def _describe_image(path: Path) -> list[str]:
    from PIL import Image, UnidentifiedImageError

    from vsr.video.stills import png_bit_depth

    try:
        with Image.open(path) as im:
            depth = png_bit_depth(path) or (16 if im.mode.startswith("I;16") else 8)
            return [f"{path.name}: {im.format} image, {im.width}x{im.height}, {im.mode}, {depth}-bit"]
    except (UnidentifiedImageError, OSError) as err:
        raise VsrError(f"cannot read image {path}: {err}") from None
