"""Training and evaluation data: the paper's bicubic downscaling, seeded degradations, frame extraction and datasets.

Images are uint8 (H, W, 3) RGB numpy arrays everywhere in this package; only :class:`PairDataset` turns them into
float tensors. Every random choice draws from an ``np.random.Generator`` the caller passes in (or, in the dataset,
one seeded per worker process), so a degradation is reproducible from its seed.

Modules: :mod:`~vsr.data.images` (reading, listing and bicubic resizing of images), :mod:`~vsr.data.degrade`
(Degradation), :mod:`~vsr.data.frames` (prepare_frames), :mod:`~vsr.data.dataset` (PairDataset, make_loader),
:mod:`~vsr.data.sequences` (SequenceDataset: crops of consecutive frames degraded as video).
"""

from vsr.data.dataset import SAMPLE_BY, PairDataset, make_loader
from vsr.data.degrade import Degradation
from vsr.data.frames import prepare_frames
from vsr.data.sequences import SequenceDataset
from vsr.data.images import (
    IMAGE_EXTS,
    WRITABLE_EXTS,
    Picture,
    bicubic_downscale,
    bicubic_upscale,
    list_images,
    load_image,
    read_image,
    to_uint8,
    write_image,
)

__all__ = [
    "IMAGE_EXTS",
    "WRITABLE_EXTS",
    "bicubic_downscale",
    "bicubic_upscale",
    "load_image",
    "Picture",
    "read_image",
    "to_uint8",
    "write_image",
    "Degradation",
    "list_images",
    "prepare_frames",
    "PairDataset",
    "SequenceDataset",
    "SAMPLE_BY",
    "make_loader",
]
