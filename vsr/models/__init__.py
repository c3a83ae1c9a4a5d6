"""Super-resolution networks, their registry and their weight files.

Modules: :mod:`~vsr.models.archs` (the networks and the SRGAN discriminator), :mod:`~vsr.models.recurrent` (the streaming
multi-frame network), :mod:`~vsr.models.registry` (one
builder per architecture, the flat hand-written ``MODELS`` dict, :func:`build_model`, :func:`load_model`,
:func:`save_weights`), :mod:`~vsr.models.weights` (reading and finding weight files),
:mod:`~vsr.models.foreign` (other projects' weights through spandrel), :mod:`~vsr.models.ops` (BatchNorm folding,
FLOP counting), :mod:`~vsr.models.fast` (the CPU inference graph of the SRResNet family).
This file only gathers their public names.

Every model maps ``lq`` (N, 3, h, w) float in [0, 1] to (N, 3, h * scale, w * scale) and has a ``.scale`` attribute.
Weight files are ``{"arch", "args", "state_dict", "meta"}`` dicts saved by :func:`save_weights`; BasicSR-style
``{"params" | "params_ema": state_dict}`` files load too when the architecture is named, and any other project's file
whose architecture spandrel recognises (Real-ESRGAN, ESRGAN, SwinIR, HAT, ...) loads as a :class:`ForeignModel`.
"""

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
from vsr.models.recurrent import AlignedRecurrentSRResNet, RecurrentSRResNet, RecurrentState
from vsr.models.registry import (
    MODELS,
    bicubic,
    build_model,
    encdec,
    espcn,
    fsrcnn,
    inspect_weights,
    list_models,
    rsrresnet,
    load_model,
    save_weights,
    srcnn,
    srresnet,
)
from vsr.models.weights import (
    DEFAULT_WEIGHTS_DIR,
    find_weights,
    load_weights_file,
    resolve_weights_path,
    weights_dir,
)

__all__ = [
    "DEFAULT_WEIGHTS_DIR", "ESPCN", "FSRCNN", "MODELS", "SCALES", "SRCNN", "Bicubic", "Discriminator",
    "AlignedRecurrentSRResNet", "EncoderDecoder", "ForeignModel", "RecurrentSRResNet", "RecurrentState", "ResidualBlock",
    "SRResNet", "bicubic",
    "build_model", "count_flops", "encdec", "espcn", "find_weights", "fold_batchnorm", "foreign_architectures",
    "fsrcnn", "inspect_weights", "list_models", "load_model", "load_weights_file", "resolve_weights_path",
    "rsrresnet", "save_weights", "srcnn", "srresnet", "weights_dir",
]
