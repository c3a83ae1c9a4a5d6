"""Super-resolution networks, their registry and their weight files.

Modules: :mod:`~vsr.models.archs` (the networks and the SRGAN discriminator), :mod:`~vsr.models.weights` (weight
files, finding shipped weights, :func:`load_model`), :mod:`~vsr.models.foreign` (other projects' weights through
spandrel), :mod:`~vsr.models.ops` (BatchNorm folding, FLOP counting).
This file holds the registry: one builder per architecture and the flat, hand-written ``MODELS`` dict.

Every model maps ``lq`` (N, 3, h, w) float in [0, 1] to (N, 3, h * scale, w * scale) and has a ``.scale`` attribute.
Weight files are ``{"arch", "args", "state_dict", "meta"}`` dicts saved by :func:`save_weights`; BasicSR-style
``{"params" | "params_ema": state_dict}`` files load too when the architecture is named, and any other project's file
whose architecture spandrel recognises (Real-ESRGAN, ESRGAN, SwinIR, HAT, ...) loads as a :class:`ForeignModel`.
"""

from pathlib import Path
from typing import Any, Callable

from torch import nn

from vsr.errors import VsrError
from vsr.models.archs import (
    ESPCN,
    FSRCNN,
    SCALES,
    SRCNN,
    Bicubic,
    Discriminator,
    EncoderDecoder,
    ResidualBlock,
    SRResNet,
)
from vsr.models.foreign import ForeignModel, foreign_architectures
from vsr.models.ops import count_flops, fold_batchnorm
from vsr.models.weights import (
    DEFAULT_WEIGHTS_DIR,
    with_weights,
    find_weights,
    inspect_weights,
    load_model,
    load_weights_file,
    resolve_weights_path,
    save_weights,
    weights_dir,
)

__all__ = [
    "DEFAULT_WEIGHTS_DIR", "ESPCN", "FSRCNN", "MODELS", "SCALES", "SRCNN", "Bicubic", "Discriminator",
    "EncoderDecoder", "ForeignModel", "ResidualBlock", "SRResNet", "bicubic", "build_model", "count_flops", "encdec",
    "espcn", "find_weights", "fold_batchnorm", "foreign_architectures", "fsrcnn", "inspect_weights", "list_models",
    "load_model", "load_weights_file", "resolve_weights_path", "save_weights", "srcnn", "srresnet", "weights_dir",
]


# Builders. `weights` (a file path) loads a state dict into the freshly built model, torchvision style.


def srresnet(*, scale: int = 4, weights: str | Path | None = None, **kwargs: Any) -> SRResNet:
    """SRResNet; kwargs: num_in_ch, num_out_ch, num_feat=64, num_block=16."""
    return with_weights(SRResNet(scale=scale, **kwargs), "srresnet", weights)


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
    if arch not in MODELS:
        raise VsrError(f"unknown model {arch!r}; choose one of: {', '.join(MODELS)}")
    try:
        return MODELS[arch](**args)
    except TypeError as e:
        raise VsrError(f"bad arguments for {arch}: {e}") from None
