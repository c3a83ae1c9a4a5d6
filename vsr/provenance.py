"""Provenance: what made an output, stored in it so that it can be told later (`vsr info FILE`).

Every output carries the vsr version, the model's name and architecture, the SHA-256 of its weights file, the scale,
the precision it ran in and whether the model is generative (trained with an adversarial loss, so that it may draw
detail that was not in the source: ``yes``, ``no`` or ``unknown``). Videos carry them as container tags
(``vsr_model`` ...; see `vsr.video.tags`), images as PNG text chunks or, in JPEG / WebP / TIFF, as EXIF
ImageDescription and Software and an XMP packet.

Whether a model is generative comes from its weights' meta: the ``generative`` key `vsr train` writes, else (for
files exported before that key) their ``phase``: "gan" is adversarial, "mse" is not. Other projects' files say
neither, so they are ``unknown`` unless the user says (``vsr enhance --generative yes``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import re
import struct
import zlib
from pathlib import Path
from xml.etree import ElementTree

PREFIX = "vsr_"
KEYS = ("version", "model", "arch", "weights_sha256", "scale", "precision", "generative")
GENERATIVE = ("yes", "no", "unknown")
XMP_NS = "urn:vsr:provenance:1"  # a URN: the namespace names vsr's keys, it is never fetched


def version() -> str:
    """The installed vsr's version, as ``vsr --version`` prints it (from the package's metadata)."""
    try:
        return importlib.metadata.version("vsr")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def generative(meta: dict | None) -> str:
    """``yes`` / ``no`` / ``unknown``: whether weights with this meta were trained with an adversarial loss.

    An explicit ``generative`` key wins (``vsr train`` writes it; a user's ``--generative`` sets it); else vsr's
    own files tell by their training ``phase`` ("gan" adversarial, "mse" not), which `vsr train` has always written.
    """
    meta = meta or {}
    said = str(meta.get("generative", "")).lower()
    if said in GENERATIVE:
        return said
    if meta.get("phase") == "gan" or meta.get("adv_weight"):
        return "yes"
    if meta.get("phase") == "mse":
        return "no"
    return "unknown"


@functools.lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file, hex (cached by path, size and modification time: a weights file is hashed once per run)."""
    stat = os.stat(path)
    return _sha256(os.fspath(path), stat.st_size, stat.st_mtime_ns)


def model_tags(model, precision: str) -> dict[str, str]:
    """The provenance of outputs ``model`` makes in ``precision``, keys without the ``vsr_`` prefix.

    Args:
        model: a model from `vsr.load_model` (``.arch``, ``.meta``, ``.scale``; ``.name`` and ``.weights_file``
            where it was loaded from a file).
        precision: the number format it runs in ("fp32", "bf16", "fp16").
    """
    arch = str(getattr(model, "arch", None) or type(model).__name__)
    weights = getattr(model, "weights_file", None)
    if arch == "bicubic" and weights is None:
        sha, made_up = "none", "no"  # plain interpolation: no weights, nothing invented
    else:
        sha = file_sha256(weights) if weights is not None and Path(weights).is_file() else "unknown"
        made_up = generative(getattr(model, "meta", None))
    return {"version": version(), "model": str(getattr(model, "name", None) or arch), "arch": arch,
            "weights_sha256": sha, "scale": str(getattr(model, "scale", "")), "precision": precision,
            "generative": made_up}


def prefixed(tags: dict[str, str]) -> dict[str, str]:
    """``{"model": ...}`` -> ``{"vsr_model": ...}``: the names stored in files."""
    return {PREFIX + k: v for k, v in tags.items()}


def from_tags(tags: dict[str, str]) -> dict[str, str]:
    """vsr's keys found among a file's tags (any case: Matroska stores them upper-case), without the prefix."""
    found = {}
    for key, value in tags.items():
        low = key.lower()
        if low.startswith(PREFIX) and low[len(PREFIX):] in KEYS:
            found[low[len(PREFIX):]] = value
    return {k: found[k] for k in KEYS if k in found}


def summary_line(tags: dict[str, str]) -> str:
    """``vsr_version=0.1.0; vsr_model=srgan; ...``: the form stored where only one text field exists (EXIF)."""
    return "; ".join(f"{PREFIX}{k}={v}" for k, v in tags.items())


def parse_summary(text: str) -> dict[str, str]:
    """The keys of a :func:`summary_line` (other text around them is ignored)."""
    return from_tags(dict(re.findall(rf"({PREFIX}\w+)=([^;]*)", text or "")))


def xmp_packet(tags: dict[str, str]) -> bytes:
    """An XMP packet holding the keys as properties of vsr's namespace."""
    rdf = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
    ElementTree.register_namespace("x", "adobe:ns:meta/")
    ElementTree.register_namespace("rdf", rdf)
    ElementTree.register_namespace("vsr", XMP_NS)
    root = ElementTree.Element("{adobe:ns:meta/}xmpmeta")
    desc = ElementTree.SubElement(ElementTree.SubElement(root, f"{{{rdf}}}RDF"), f"{{{rdf}}}Description",
                                  {f"{{{rdf}}}about": ""})
    for key, value in tags.items():
        desc.set(f"{{{XMP_NS}}}{key}", value)
    body = ElementTree.tostring(root, encoding="unicode")
    return f'<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>{body}<?xpacket end="w"?>'.encode()


def parse_xmp(data: bytes | str | None) -> dict[str, str]:
    """vsr's keys in an XMP packet (written by :func:`xmp_packet`); {} if there are none or it does not parse."""
    if not data:
        return {}
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    start, end = text.find("<x:xmpmeta"), text.rfind("</x:xmpmeta>")
    if start < 0 or end < 0:
        return {}
    try:
        root = ElementTree.fromstring(text[start:end + len("</x:xmpmeta>")])
    except ElementTree.ParseError:
        return {}
    found = {}
    for element in root.iter():
        for name, value in element.attrib.items():
            if name.startswith(f"{{{XMP_NS}}}"):
                found[name.split("}", 1)[1]] = value
    return {k: found[k] for k in KEYS if k in found}


def add_png_text(path: str | os.PathLike, tags: dict[str, str]) -> None:
    """Adds one ``tEXt`` chunk per key (``vsr_model`` ...) to the PNG file at ``path``, before its IEND chunk.

    Works on any PNG (Pillow's 8-bit ones and FFmpeg's 16-bit ones alike); the pixels are not touched.
    """
    data = Path(path).read_bytes()
    end = data.rfind(b"IEND")
    if not data.startswith(b"\x89PNG\r\n\x1a\n") or end < 12:
        raise ValueError(f"{path} is not a PNG file")
    chunks = b""
    for key, value in prefixed(tags).items():
        body = key.encode("latin-1") + b"\0" + value.encode("latin-1", "replace")
        chunks += struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    at = end - 4  # the IEND chunk starts with its 4-byte length
    Path(path).write_bytes(data[:at] + chunks + data[at:])
