"""vsr: video super-resolution that keeps every frame, timestamp and audio packet."""

__version__ = "0.1.0"

from vsr.errors import VsrError
from vsr.models import list_models, load_model
from vsr.pipeline import EnhanceConfig, enhance_video, upscale_image

__all__ = ["VsrError", "EnhanceConfig", "enhance_video", "upscale_image", "load_model", "list_models", "__version__"]
