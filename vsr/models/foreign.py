"""Weights made by other projects (Real-ESRGAN, ESRGAN, BasicSR, SwinIR, HAT, ...), through spandrel.

spandrel (chaiNNer's loader) recognises an architecture and its sizes from the tensors of a state dict alone. The
file itself is read here, not by spandrel, so that reading stays safe: ``torch.load(weights_only=True)`` for
``.pth`` / ``.pt`` / ``.ckpt`` (no pickled code runs; spandrel would ``torch.jit.load`` a ``.pt``, which runs
TorchScript) and ``safetensors`` for ``.safetensors``. The network spandrel builds is wrapped in
:class:`ForeignModel`, which looks like any vsr model (NCHW in [0, 1] in, ``scale`` times larger out, ``.scale``,
``.arch``, ``.args``, ``.meta``), so it runs through the same pipeline: precision choice, batching, tiling,
out-of-memory and non-finite recovery, streams, resume.

spandrel is imported only when a file is not one of ours, so vsr's own weights load without it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vsr.errors import VsrError

# What users are told to install when spandrel is missing (it is a dependency; this covers a broken environment).
_INSTALL = "pip install spandrel safetensors"
FOREIGN_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors")


def read_tensors(path: str | Path) -> dict[str, Any]:
    """Reads a weights file safely onto the CPU: safetensors, or ``torch.load(weights_only=True)``.

    Raises:
        VsrError: missing, truncated or damaged file, or a pickle that holds Python objects (code) not tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise VsrError(f"no such weights file: {path}")
    if path.suffix.lower() == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise VsrError(f"reading {path} needs safetensors: {_INSTALL}") from None
        try:
            return load_file(str(path), device="cpu")
        except Exception as e:  # safetensors raises SafetensorError (and others) for damaged headers
            raise VsrError(f"cannot read {path}: not a complete safetensors file ({_first_line(e)})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError, RuntimeError, EOFError, ValueError... for bad files
        if "Weights only load failed" in str(e):
            raise VsrError(f"refusing to load {path}: it holds Python objects, not just tensors") from None
        raise VsrError(f"cannot read weights file {path}: not a PyTorch weights file ({_first_line(e)})") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]


def _spandrel():
    try:
        import spandrel
    except ImportError:
        raise VsrError(f"loading weights from other projects needs spandrel: {_INSTALL}") from None
    return spandrel


def foreign_architectures() -> list[str]:
    """The architectures spandrel recognises (its main registry), sorted by name."""
    spandrel = _spandrel()
    return sorted({support.architecture.name for support in spandrel.MAIN_REGISTRY.architectures()}, key=str.lower)


def describe_foreign(path: str | Path, tensors: dict[str, Any] | None = None):
    """spandrel's descriptor (architecture, scale, channels, purpose, ...) of a foreign weights file.

    Args:
        path: the file (for messages; read when ``tensors`` is None).
        tensors: what :func:`read_tensors` returned for it, to avoid reading it twice.

    Raises:
        VsrError: unreadable file, or an architecture spandrel does not know.
    """
    spandrel = _spandrel()
    tensors = read_tensors(path) if tensors is None else tensors
    if not isinstance(tensors, dict):
        raise VsrError(f"{path} is not a weights file (it holds a {type(tensors).__name__}, not a dict of tensors)")
    state_dict = spandrel.canonicalize_state_dict(tensors)
    try:
        return spandrel.ModelLoader(device="cpu").load_from_state_dict(state_dict)
    except spandrel.UnsupportedModelError:
        known = len(foreign_architectures())
        raise VsrError(f"{path} does not say which model it is for, and it is none of the {known} architectures "
                       f"spandrel knows (vsr models); if it holds one of vsr's, name it with -m (e.g. -m srresnet)"
                       ) from None
    except Exception as e:  # an arch detected but its tensors do not fit: a damaged or edited file
        raise VsrError(f"{path}: looks like a spandrel architecture but does not load ({_first_line(e)})") from None


class ForeignModel(nn.Module):
    """A network spandrel built, as a vsr model: pads the input to the sizes the architecture needs, crops back.

    Attributes:
        net: the spandrel architecture's ``nn.Module``.
        scale: its upscaling factor (1 for restoration models such as denoisers).
        arch: spandrel's architecture name (``"ESRGAN"``, ``"RealESRGAN Compact"``, ...).
        args: what spandrel read off the tensors (``tags``, channels, size requirements).
        meta: ``{"source": "spandrel", "unsupported_precisions": [...]}`` (``vsr.precision`` reads the latter).
    """

    def __init__(self, descriptor, path: str | Path = "") -> None:
        super().__init__()
        self.net = descriptor.model
        self.scale = int(descriptor.scale)
        self.arch = descriptor.architecture.name
        req = descriptor.size_requirements
        self.minimum, self.multiple_of, self.square = int(req.minimum), int(req.multiple_of), bool(req.square)
        self.args = {"tags": list(descriptor.tags), "purpose": descriptor.purpose,
                     "input_channels": descriptor.input_channels, "output_channels": descriptor.output_channels,
                     "size_requirements": {"minimum": self.minimum, "multiple_of": self.multiple_of,
                                           "square": self.square}}
        unsupported = [name for name, ok in (("fp16", descriptor.supports_half), ("bf16", descriptor.supports_bfloat16))
                       if not ok]
        self.meta = {"source": "spandrel", "file": str(path), "unsupported_precisions": unsupported}

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        h, w = lq.shape[-2:]
        ph, pw = self._padded(h), self._padded(w)
        if self.square:
            ph = pw = max(ph, pw)
        if (ph, pw) != (h, w):
            # Reflect where the frame is big enough (no invented edge), replicate below that; cropped off after.
            mode = "reflect" if ph - h < h and pw - w < w else "replicate"
            lq = F.pad(lq, (0, pw - w, 0, ph - h), mode=mode)
        out = self.net(lq)
        return out[..., : h * self.scale, : w * self.scale] if (ph, pw) != (h, w) else out

    def _padded(self, side: int) -> int:
        side = max(side, self.minimum)
        return int(math.ceil(side / self.multiple_of) * self.multiple_of) if self.multiple_of > 1 else side


def load_foreign(path: str | Path, tensors: dict[str, Any] | None = None) -> ForeignModel:
    """A foreign weights file as a :class:`ForeignModel` in eval mode, on the CPU.

    Raises:
        VsrError: unreadable or unknown file, or a model that is not an RGB image-to-image network (inpainting
            models, grayscale or face-only models cannot run on video frames).
    """
    spandrel = _spandrel()
    descriptor = describe_foreign(path, tensors)
    name = descriptor.architecture.name
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise VsrError(f"{path} is a {name} {descriptor.purpose} model (it needs a mask), not an upscaler")
    if descriptor.purpose == "FaceSR":
        raise VsrError(f"{path} is {name}, a face restoration model for aligned face crops, not whole frames")
    if descriptor.input_channels != 3 or descriptor.output_channels != 3:
        raise VsrError(f"{path} is a {name} model with {descriptor.input_channels} input and "
                       f"{descriptor.output_channels} output channels; vsr runs RGB (3 -> 3) models")
    return ForeignModel(descriptor, path).eval()


def inspect_foreign(path: str | Path, tensors: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a foreign file is, as plain values (for ``vsr models --inspect``)."""
    descriptor = describe_foreign(path, tensors)
    req = descriptor.size_requirements
    return {
        "file": str(path),
        "format": "spandrel",
        "arch": descriptor.architecture.name,
        "scale": int(descriptor.scale),
        "purpose": descriptor.purpose,
        "tags": list(descriptor.tags),
        "input_channels": descriptor.input_channels,
        "output_channels": descriptor.output_channels,
        "params": sum(p.numel() for p in descriptor.model.parameters()),
        "fp16": bool(descriptor.supports_half),
        "bf16": bool(descriptor.supports_bfloat16),
        "size_requirements": {"minimum": req.minimum, "multiple_of": req.multiple_of, "square": req.square},
    }
