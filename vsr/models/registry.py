"""The architectures by name: one builder per architecture, the flat, hand-written ``MODELS`` dict, and the functions
that go from a name to a model (:func:`build_model`, :func:`load_model`) and from a model to a file that names its
architecture (:func:`save_weights`).

A weights file names its architecture; this module decides whether it knows that name. `vsr.models.weights` reads
and finds the files without knowing which architectures exist, so it does not import this module.
"""

import os
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from vsr.atomic import atomic_write
from vsr.errors import VsrError
from vsr.models import foreign
from vsr.models.archs import ESPCN, FSRCNN, SRCNN, Bicubic, EncoderDecoder, SRResNet
from vsr.models.ops import fold_batchnorm
from vsr.models.recurrent import AlignedRecurrentSRResNet, RecurrentSRResNet
from vsr.models.weights import (
    find_weights,
    is_training_checkpoint,
    is_vsr_file,
    load_state,
    parse_weights,
    resolve_weights_path,
    strip_prefixes,
    unwrap_model,
    weights_dir,
    with_weights,
)

# Builders. `weights` (a file path) loads a state dict into the freshly built model, torchvision style.


def srresnet(*, scale: int = 4, weights: str | Path | None = None, **kwargs: Any) -> SRResNet:
    """SRResNet; kwargs: num_in_ch, num_out_ch, num_feat=64, num_block=16."""
    return with_weights(SRResNet(scale=scale, **kwargs), "srresnet", weights)


def rsrresnet(*, scale: int = 4, weights: str | Path | None = None, **kwargs: Any) -> RecurrentSRResNet:
    """Forward-recurrent SRResNet; kwargs: num_in_ch, num_out_ch, num_feat=64, num_block=15, num_state=32,
    cut_threshold=0.1."""
    return with_weights(RecurrentSRResNet(scale=scale, **kwargs), "rsrresnet", weights)


def arsrresnet(*, scale: int = 4, weights: str | Path | None = None,
               **kwargs: Any) -> AlignedRecurrentSRResNet:
    """rsrresnet with its past motion-compensated (block matching at LR); kwargs: as rsrresnet, align_radius=7."""
    return with_weights(AlignedRecurrentSRResNet(scale=scale, **kwargs), "arsrresnet", weights)


def srcnn(*, scale: int = 4, weights: str | Path | None = None, **kwargs: Any) -> SRCNN:
    """SRCNN 9-5-5; kwargs: num_in_ch, num_out_ch, num_feat=64, num_feat2=32."""
    return with_weights(SRCNN(scale=scale, **kwargs), "srcnn", weights)


def fsrcnn(*, scale: int = 4, weights: str | Path | None = None, **kwargs: Any) -> FSRCNN:
    """FSRCNN; kwargs: num_in_ch, num_out_ch, num_feat=56, num_shrink=12, num_map=4."""
    return with_weights(FSRCNN(scale=scale, **kwargs), "fsrcnn", weights)


def espcn(*, scale: int = 4, weights: str | Path | None = None, **kwargs: Any) -> ESPCN:
    """ESPCN; kwargs: num_in_ch, num_out_ch, num_feat=64, num_feat2=32."""
    return with_weights(ESPCN(scale=scale, **kwargs), "espcn", weights)


def encdec(*, scale: int = 4, weights: str | Path | None = None, **kwargs: Any) -> EncoderDecoder:
    """Encoder-decoder baseline; kwargs: num_in_ch, num_out_ch, num_feat=64, num_down=2, num_block=2."""
    return with_weights(EncoderDecoder(scale=scale, **kwargs), "encdec", weights)


def bicubic(*, scale: int = 4, weights: str | Path | None = None) -> Bicubic:
    """Bicubic upscaling; has no parameters, so ``weights`` must be None."""
    if weights is not None:
        raise VsrError("bicubic has no weights to load")
    return Bicubic(scale=scale)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "srresnet": srresnet,
    "rsrresnet": rsrresnet,
    "arsrresnet": arsrresnet,
    "srcnn": srcnn,
    "fsrcnn": fsrcnn,
    "espcn": espcn,
    "encdec": encdec,
    "bicubic": bicubic,
}


def list_models() -> list[str]:
    """Names of the registered architectures, in registry order."""
    return list(MODELS)


def build_model(arch: str, **args: Any) -> nn.Module:
    """Builds an architecture from the registry with random weights.

    Args:
        arch: a name from :func:`list_models`.
        **args: the builder's keyword arguments (``scale`` and the class's own).

    Raises:
        VsrError: unknown ``arch``, unsupported scale, or arguments the architecture does not take.
    """
    check_arch(arch)
    try:
        return MODELS[arch](**args)
    except TypeError as e:
        raise VsrError(f"bad arguments for {arch}: {e}") from None


def check_arch(arch: str) -> str:
    """``arch`` if it is a registered architecture.

    Raises:
        VsrError: an unknown name.
    """
    if arch not in MODELS:
        raise VsrError(f"unknown model {arch!r}; choose one of: {', '.join(MODELS)}")
    return arch


def check_file_arch(arch: str, path: Path) -> str:
    """The architecture a weights file names, if it is a registered one.

    Raises:
        VsrError: the file is for an architecture this vsr does not know.
    """
    if arch not in MODELS:
        raise VsrError(f"weights {path} are for an unknown model {arch!r}; known: {', '.join(MODELS)}")
    return arch


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
    model = unwrap_model(model)
    if getattr(model, "bn_folded", False):
        raise ValueError("cannot save a BN-folded model: its state_dict no longer matches its architecture")
    if arch not in MODELS:
        raise ValueError(f"unknown arch {arch!r}")
    args = dict(args)
    args.setdefault("scale", model.scale)
    if args["scale"] != model.scale:
        raise ValueError(f"args scale {args['scale']} != model.scale {model.scale}")
    state_dict = {k: v.detach().cpu().clone() for k, v in strip_prefixes(model.state_dict()).items()}
    with atomic_write(path) as temp:
        torch.save({"arch": arch, "args": args, "state_dict": state_dict, "meta": dict(meta or {})}, temp)


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
    kind = "vsr training checkpoint" if is_training_checkpoint(ckpt) else "vsr"
    arch, args, state_dict, meta = parse_weights(ckpt, path)
    check_file_arch(arch, path)
    return {"file": str(path), "format": kind, "arch": arch, "scale": args.get("scale"), "args": args,
            "params": sum(v.numel() for k, v in state_dict.items() if v.is_floating_point() and "running_" not in k),
            "meta": meta}


def looks_like_path(name: str) -> bool:
    """Whether ``-m NAME`` names a file rather than a shipped model."""
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
        The model in eval mode on ``device``, with ``.scale``, ``.arch`` (str), ``.args`` (dict), ``.meta``
        (dict, the file's meta, e.g. ``{"precision_ok": ["bf16"], "trained_steps": ...}``), ``.name`` (the shipped
        name, or the file's stem) and ``.weights_file`` (the Path read, None for bicubic).

    Raises:
        VsrError: no weights for that name and scale, unreadable or foreign file, wrong scale, arch or sizes,
            unusable device.
    """
    if arch is not None:
        check_arch(arch)
    name = str(name_or_path)
    shipped = None
    if name == "bicubic" and not Path(name).is_file():
        model = Bicubic(scale=scale or 4)
        model.arch, model.args, model.meta = "bicubic", {"scale": scale or 4}, {}
        path = None
    else:
        path = Path(name) if isinstance(name_or_path, Path) or looks_like_path(name) else None
        if path is None:
            # A shipped file named after an architecture is that architecture (lets BasicSR files ship as-is).
            arch = arch or (name if name in MODELS else None)
            path = shipped = find_weights(name, scale or 4)
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
            check_file_arch(file_arch, path)
            file_scale = args.get("scale")
            if scale is not None and file_scale is not None and file_scale != scale:
                raise VsrError(f"weights {path} are for x{file_scale}, asked for x{scale}")
            args["scale"] = file_scale or scale or 4
            model = build_model(file_arch, **args)
            load_state(model, state_dict, path, file_arch, args)
            model.arch, model.args, model.meta = file_arch, args, meta
    # What made an output (vsr.provenance): the shipped name (-m srgan) or the file's stem, and the file itself.
    model.name = name if shipped is not None or path is None else Path(name).stem
    model.weights_file = path
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
