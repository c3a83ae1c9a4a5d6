"""Weight files: ``{"arch", "args", "state_dict", "meta"}`` dicts written by :func:`save_weights`, read safely by
:func:`load_weights_file` (which also takes BasicSR-style ``{"params" | "params_ema": state_dict}`` files when the
architecture is named), found by name in the weights folder, and turned into a ready model by :func:`load_model`.

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

# The registry in vsr/models/__init__.py (MODELS, build_model) loads weights through this module, and this module
# checks arch names against the registry: a cycle. So the package itself is imported here and `models.MODELS` is
# read when a function runs, by which time the package has finished importing.
from vsr import models
from vsr.errors import VsrError
from vsr.models import foreign
from vsr.models.archs import Bicubic
from vsr.models.ops import fold_batchnorm

# Shipped weights are package data (vsr/weights/*.pt), so an installed wheel has them wherever it runs from;
# $VSR_WEIGHTS_DIR overrides (read at call time). vsr is installed as files, never run from a zip, so the resource
# is a real folder that torch.load can open.
DEFAULT_WEIGHTS_DIR = Path(str(importlib.resources.files("vsr") / "weights"))


def _strip_prefixes(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # DistributedDataParallel adds "module.", torch.compile adds "_orig_mod."; either may wrap the other.
    out = {}
    for key, value in state_dict.items():
        while key.startswith(("module.", "_orig_mod.")):
            key = key.split(".", 1)[1]
        out[key] = value
    return out


def _unwrap(model: nn.Module) -> nn.Module:
    # DistributedDataParallel keeps the model in .module, torch.compile in ._orig_mod.
    for attr in ("module", "_orig_mod", "module"):
        inner = getattr(model, attr, None)
        if isinstance(inner, nn.Module):
            model = inner
    return model


def save_weights(
    model: nn.Module, path: str | Path, *, arch: str, args: dict[str, Any], meta: dict[str, Any] | None = None
) -> None:
    """Saves ``{"arch", "args", "state_dict", "meta"}`` with tensors on the CPU, atomically (temp file + rename).

    Args:
        model: the model (DDP / torch.compile wrappers are unwrapped). Must not be BN-folded.
        path: the file to write (``.pt``).
        arch: its registry name; ``build_model(arch, **args)`` must rebuild it.
        args: builder arguments; ``scale`` is added from ``model.scale`` if missing.
        meta: free-form facts about the weights (``trained_steps``, ``precision_ok``, scores, ...).
    """
    model = _unwrap(model)
    if getattr(model, "bn_folded", False):
        raise ValueError("cannot save a BN-folded model: its state_dict no longer matches its architecture")
    if arch not in models.MODELS:
        raise ValueError(f"unknown arch {arch!r}")
    args = dict(args)
    args.setdefault("scale", model.scale)
    if args["scale"] != model.scale:
        raise ValueError(f"args scale {args['scale']} != model.scale {model.scale}")
    state_dict = {k: v.detach().cpu().clone() for k, v in _strip_prefixes(model.state_dict()).items()}
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        torch.save({"arch": arch, "args": args, "state_dict": state_dict, "meta": dict(meta or {})}, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
        VsrError: missing or unreadable file, not a weights dict, unknown or conflicting arch.
    """
    return parse_weights(foreign.read_tensors(path), Path(path), arch)


def is_vsr_file(ckpt: Any) -> bool:
    """Whether what a weights file holds is one of ours: a :func:`save_weights` dict or a training checkpoint."""
    return isinstance(ckpt, dict) and (("arch" in ckpt and "state_dict" in ckpt) or _is_training_checkpoint(ckpt))


def _is_training_checkpoint(ckpt: Any) -> bool:
    # vsr.train.checkpoint's layout; read here because models cannot import train (imports point one way).
    return isinstance(ckpt, dict) and isinstance(ckpt.get("model_args"), dict) and isinstance(ckpt.get("G"), dict)


def parse_weights(
    ckpt: Any, path: Path, arch: str | None = None
) -> tuple[str, dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    """:func:`load_weights_file` on what a file held (already read with :func:`vsr.models.foreign.read_tensors`)."""
    if arch is not None and arch not in models.MODELS:
        raise VsrError(f"unknown model {arch!r}; choose one of: {', '.join(models.MODELS)}")

    def is_state_dict(d: Any) -> bool:
        return isinstance(d, dict) and bool(d) and all(isinstance(k, str) and torch.is_tensor(v) for k, v in d.items())

    if _is_training_checkpoint(ckpt):
        model_args = ckpt["model_args"]
        ema = ckpt.get("ema")
        ckpt = {"arch": model_args.get("arch"), "args": model_args.get("args"),
                "state_dict": ema["module"] if isinstance(ema, dict) and ema.get("module") else ckpt["G"],
                "meta": {"source": "training checkpoint", "trained_steps": ckpt.get("step"),
                         "ema": bool(isinstance(ema, dict) and ema.get("module"))}}
    if isinstance(ckpt, dict) and "arch" in ckpt and "state_dict" in ckpt:
        file_arch, args, state_dict, meta = ckpt["arch"], ckpt.get("args") or {}, ckpt["state_dict"], ckpt.get("meta")
        if file_arch not in models.MODELS:
            raise VsrError(f"weights {path} are for an unknown model {file_arch!r}; known: {', '.join(models.MODELS)}")
        if arch is not None and arch != file_arch:
            raise VsrError(f"weights {path} are for {file_arch}, not {arch}")
        if not isinstance(args, dict) or not isinstance(state_dict, dict):
            raise VsrError(f"weights {path} are damaged: 'args' and 'state_dict' must be dicts")
        return file_arch, dict(args), _strip_prefixes(state_dict), dict(meta) if isinstance(meta, dict) else {}

    key = next((k for k in ("params_ema", "params") if isinstance(ckpt, dict) and is_state_dict(ckpt.get(k))), None)
    if key is not None or is_state_dict(ckpt):
        if arch is None:
            raise VsrError(f"{path} does not say which model it is for; name the model (e.g. --model srresnet)")
        state_dict = _strip_prefixes(ckpt[key] if key else ckpt)
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


def inspect_weights(path: str | Path) -> dict[str, Any]:
    """What a weights file is, as plain values (``vsr models --inspect``): ours, a training run's, or a foreign one.

    Returns:
        ``{"file", "format" ("vsr" / "vsr training checkpoint" / "spandrel"), "arch", "scale", "params", ...}``;
        vsr files add ``args`` and ``meta``, foreign ones what spandrel reads off the tensors (purpose, tags,
        channels, whether fp16 / bf16 run, size requirements).

    Raises:
        VsrError: unreadable file, or neither ours nor an architecture spandrel knows.
    """
    path = resolve_weights_path(path)
    ckpt = foreign.read_tensors(path)
    if not is_vsr_file(ckpt):
        return foreign.inspect_foreign(path, ckpt)
    kind = "vsr training checkpoint" if _is_training_checkpoint(ckpt) else "vsr"
    arch, args, state_dict, meta = parse_weights(ckpt, path)
    return {"file": str(path), "format": kind, "arch": arch, "scale": args.get("scale"), "args": args,
            "params": sum(v.numel() for k, v in state_dict.items() if v.is_floating_point() and "running_" not in k),
            "meta": meta}


def _load_state(model: nn.Module, state_dict: dict[str, torch.Tensor], path: Path, arch: str, args: dict) -> None:
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
    if weights is not None:
        _, args, state_dict, _ = load_weights_file(weights, arch)
        if args.get("scale", model.scale) != model.scale:
            raise VsrError(f"weights {weights} are for x{args['scale']}, asked for x{model.scale}")
        _load_state(model, state_dict, Path(weights), arch, args)
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


def _looks_like_path(name: str) -> bool:
    return os.sep in name or "/" in name or Path(name).suffix != "" or Path(name).is_file()


def load_model(
    name_or_path: str | Path = "srresnet",
    scale: int | None = 4,
    device: str | torch.device = "cpu",
    half: bool = False,
    *,
    arch: str | None = None,
    fold_bn: bool = True,
) -> nn.Module:
    """Loads a model ready for inference.

    Args:
        name_or_path: a weights file (ours, a training run's ``ckpt.pt`` or run folder, or another project's
            ``.pth`` / ``.pt`` / ``.ckpt`` / ``.safetensors`` that spandrel recognises), a shipped name
            (``<weights dir>/<name>_x<scale>.pt``: "srresnet", "srgan", "srresnet_real", "espcn", ...), or
            "bicubic" (needs no weights).
        scale: the wanted factor; must match the file's (a foreign file's scale is read off its tensors). None:
            take the file's.
        device: "cpu", "cuda", "cuda:N", a torch.device, or "auto" (CUDA if available).
        half: convert to float16 (for CUDA inference).
        arch: architecture name; needed for BasicSR-style files, checked against vsr files.
        fold_bn: fold BatchNorm into the preceding convs (same output, fewer ops); vsr's own architectures only.

    Returns:
        The model in eval mode on ``device``, with ``.scale``, ``.arch`` (str), ``.args`` (dict) and ``.meta``
        (dict, the file's meta, e.g. ``{"precision_ok": ["bf16"], "trained_steps": ...}``).

    Raises:
        VsrError: no weights for that name and scale, unreadable or foreign file, wrong scale, arch or sizes,
            unusable device.
    """
    name = str(name_or_path)
    if name == "bicubic" and not Path(name).is_file():
        model = Bicubic(scale=scale or 4)
        model.arch, model.args, model.meta = "bicubic", {"scale": scale or 4}, {}
    else:
        path = Path(name) if isinstance(name_or_path, Path) or _looks_like_path(name) else None
        if path is None:
            # A shipped file named after an architecture is that architecture (lets BasicSR files ship as-is).
            arch = arch or (name if name in models.MODELS else None)
            path = find_weights(name, scale or 4)
            if path is None:
                have = sorted(p.name for p in weights_dir().glob(f"{name}_x*.pt"))
                note = f" (have: {', '.join(have)})" if have else ""
                raise VsrError(
                    f"no weights for {name} x{scale or 4}{note}; pass --weights PATH or train one with vsr train"
                )
        path = resolve_weights_path(path)
        ckpt = foreign.read_tensors(path)
        if arch is None and not is_vsr_file(ckpt):
            # Not ours and no arch named: another project's file; spandrel tells what it is from its tensors.
            model = foreign.load_foreign(path, ckpt)  # arch, args and meta are its own
            if scale is not None and model.scale != scale:
                raise VsrError(f"{path} is a x{model.scale} {model.arch} model; -s {scale} disagrees"
                               f" (leave -s out to use x{model.scale})")
        else:
            file_arch, args, state_dict, meta = parse_weights(ckpt, path, arch)
            file_scale = args.get("scale")
            if scale is not None and file_scale is not None and file_scale != scale:
                raise VsrError(f"weights {path} are for x{file_scale}, asked for x{scale}")
            args["scale"] = file_scale or scale or 4
            model = models.build_model(file_arch, **args)
            _load_state(model, state_dict, path, file_arch, args)
            model.arch, model.args, model.meta = file_arch, args, meta
    model.eval()
    # Folding relies on convs registered right before the BN they feed, true of vsr's models; another project's
    # architecture may register them in any order, so it runs as it was written.
    if fold_bn and not isinstance(model, foreign.ForeignModel):
        fold_batchnorm(model)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        model.to(device)
    except (RuntimeError, AssertionError, ValueError) as e:
        raise VsrError(f"cannot use device {device}: {(str(e).splitlines() or [''])[0]}") from None
    return model.half() if half else model
