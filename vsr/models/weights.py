"""Weight files: ``{"arch", "args", "state_dict", "meta"}`` dicts (written by `vsr.models.registry.save_weights`),
read safely by :func:`load_weights_file` (which also takes BasicSR-style ``{"params" | "params_ema": state_dict}``
files when the architecture is named) and found by name in the weights folder.

This module knows the file format, not which architectures exist: a file names its architecture, and
`vsr.models.registry` (which builds models, so imports this module) decides whether it knows that name.

Shipped and exported weights are named ``<weights dir>/<name>_x<scale>.pt``: that is the name ``-m NAME`` looks for
(``vsr train --export vsr/weights/NAME_x4.pt`` makes a file that ``-m NAME`` finds).
"""

import importlib.resources
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vsr.errors import VsrError
from vsr.models import foreign

# Shipped weights are package data (vsr/weights/*.pt), so an installed wheel has them wherever it runs from;
# $VSR_WEIGHTS_DIR overrides (read at call time). vsr is installed as files, never run from a zip, so the resource
# is a real folder that torch.load can open.
DEFAULT_WEIGHTS_DIR = Path(str(importlib.resources.files("vsr") / "weights"))


def strip_prefixes(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict with the wrappers' key prefixes removed."""
    # DistributedDataParallel adds "module.", torch.compile adds "_orig_mod."; either may wrap the other.
    out = {}
    for key, value in state_dict.items():
        while key.startswith(("module.", "_orig_mod.")):
            key = key.split(".", 1)[1]
        out[key] = value
    return out


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside any DistributedDataParallel / torch.compile wrappers."""
    # DistributedDataParallel keeps the model in .module, torch.compile in ._orig_mod.
    for attr in ("module", "_orig_mod", "module"):
        inner = getattr(model, attr, None)
        if isinstance(inner, nn.Module):
            model = inner
    return model


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
    """Reads a weights file safely (``weights_only=True``, or safetensors), onto the CPU.

    Accepts vsr files (:func:`save_weights`), vsr training checkpoints (``ckpt.pt``: its EMA weights) and, when
    ``arch`` is given, BasicSR / Real-ESRGAN files ``{"params_ema" | "params": state_dict}`` (EMA preferred) or a
    bare state dict. ``module.`` / ``_orig_mod.`` prefixes are stripped. For BasicSR files ``args`` holds what could
    be read off the tensors (SRResNet: sizes and scale), else ``{}``. Files of other projects' architectures load
    with :func:`load_model` (through spandrel), not here.

    Args:
        path: the file.
        arch: architecture name; required for files that do not name theirs, checked against those that do.

    Returns:
        ``(arch, args, state_dict, meta)``.

    Raises:
        VsrError: missing or unreadable file, not a weights dict, conflicting arch. (Whether the arch is a known
            one is for whoever builds the model: `vsr.models.registry`.)
    """
    return parse_weights(foreign.read_tensors(path), Path(path), arch)


def is_vsr_file(ckpt: Any) -> bool:
    """Whether what a weights file holds is one of ours: a ``save_weights`` dict or a training checkpoint."""
    return isinstance(ckpt, dict) and (("arch" in ckpt and "state_dict" in ckpt) or is_training_checkpoint(ckpt))


def is_training_checkpoint(ckpt: Any) -> bool:
    """Whether what a file holds is a training checkpoint (``ckpt.pt``)."""
    # vsr.train.checkpoint's layout; read here because models cannot import train (imports point one way).
    return isinstance(ckpt, dict) and isinstance(ckpt.get("model_args"), dict) and isinstance(ckpt.get("G"), dict)


def parse_weights(
    ckpt: Any, path: Path, arch: str | None = None
) -> tuple[str, dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    """:func:`load_weights_file` on what a file held (already read with :func:`vsr.models.foreign.read_tensors`)."""

    def is_state_dict(d: Any) -> bool:
        return isinstance(d, dict) and bool(d) and all(isinstance(k, str) and torch.is_tensor(v) for k, v in d.items())

    if is_training_checkpoint(ckpt):
        model_args = ckpt["model_args"]
        ema = ckpt.get("ema")
        ckpt = {"arch": model_args.get("arch"), "args": model_args.get("args"),
                "state_dict": ema["module"] if isinstance(ema, dict) and ema.get("module") else ckpt["G"],
                "meta": {"source": "training checkpoint", "trained_steps": ckpt.get("step"),
                         "ema": bool(isinstance(ema, dict) and ema.get("module"))}}
    if isinstance(ckpt, dict) and "arch" in ckpt and "state_dict" in ckpt:
        file_arch, args, state_dict, meta = ckpt["arch"], ckpt.get("args") or {}, ckpt["state_dict"], ckpt.get("meta")
        if arch is not None and arch != file_arch:
            raise VsrError(f"weights {path} are for {file_arch}, not {arch}")
        if not isinstance(args, dict) or not isinstance(state_dict, dict):
            raise VsrError(f"weights {path} are damaged: 'args' and 'state_dict' must be dicts")
        return file_arch, dict(args), strip_prefixes(state_dict), dict(meta) if isinstance(meta, dict) else {}

    key = next((k for k in ("params_ema", "params") if isinstance(ckpt, dict) and is_state_dict(ckpt.get(k))), None)
    if key is not None or is_state_dict(ckpt):
        if arch is None:
            raise VsrError(f"{path} does not say which model it is for; name the model (e.g. --model srresnet)")
        state_dict = strip_prefixes(ckpt[key] if key else ckpt)
        return arch, _infer_basicsr_args(arch, state_dict), state_dict, {"source": key or "state_dict"}
    raise VsrError(f"{path} is not a weights file (expected a dict with 'arch', 'args', 'state_dict' or 'params')")


def resolve_weights_path(path: str | Path) -> Path:
    """A weights file as given, or for a training run folder its exported ``model.pt`` (else its ``ckpt.pt``).

    Raises:
        VsrError: a folder that holds neither.
    """
    path = Path(path)
    if path.is_dir():
        for name in ("model.pt", "ckpt.pt"):
            if (path / name).is_file():
                return path / name
        raise VsrError(f"{path} is a folder without model.pt or ckpt.pt; pass a weights file or a training run folder")
    return path


def load_state(model: nn.Module, state_dict: dict[str, torch.Tensor], path: Path, arch: str, args: dict) -> None:
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


def with_weights(model: nn.Module, arch: str, weights: str | Path | None) -> nn.Module:
    """``model`` (an ``arch`` just built) with the state dict of the file ``weights`` loaded, if one is given."""
    if weights is not None:
        _, args, state_dict, _ = load_weights_file(weights, arch)
        if args.get("scale", model.scale) != model.scale:
            raise VsrError(f"weights {weights} are for x{args['scale']}, asked for x{model.scale}")
        load_state(model, state_dict, Path(weights), arch, args)
    return model


def weights_dir() -> Path:
    """Where shipped weights live: ``$VSR_WEIGHTS_DIR`` if set, else the package's ``vsr/weights``."""
    return Path(os.environ["VSR_WEIGHTS_DIR"]) if os.environ.get("VSR_WEIGHTS_DIR") else DEFAULT_WEIGHTS_DIR


def find_weights(name: str, scale: int) -> Path | None:
    """The shipped weights file ``<weights dir>/<name>_x<scale>.pt``, or None if there is none.

    Only that name is looked up (a file is not opened to read its scale), so exports meant for ``-m NAME`` are
    written as ``vsr/weights/NAME_x<scale>.pt``; any other file loads with ``--weights PATH``.
    """
    path = weights_dir() / f"{name}_x{scale}.pt"
    return path if path.is_file() else None
