"""Free-form container tags (vsr's provenance keys, ``vsr_model=...``) added to an output beside the source's own.

Matroska / WebM store any key; MP4 / MOV store them with ``movflags=use_metadata_tags`` (QuickTime ``mdta`` keys,
which FFmpeg and Apple's players read back; the source's title and other tags go the same way); other containers
(AVI, MPEG-TS, MPEG-PS) keep only a fixed list, so the keys are left out there, with a warning.
"""

from __future__ import annotations

from pathlib import Path

_FREE_FORM = {".mkv", ".webm", ".mka"}
_MDTA = {".mp4", ".m4v", ".mov"}


def holds_tags(path: str | Path) -> bool:
    """Whether the container ``path``'s extension names stores free-form tags."""
    suffix = Path(path).suffix.lower()
    return suffix in _FREE_FORM or suffix in _MDTA


def tag_options(path: str | Path, tags: dict[str, str] | None) -> dict[str, str]:
    """Muxer options that make the container keep ``tags`` (none when there are none to keep)."""
    return {"movflags": "use_metadata_tags"} if tags and Path(path).suffix.lower() in _MDTA else {}


def add_tags(out, path: str | Path, tags: dict[str, str] | None, warnings: list[str]) -> None:
    """Adds ``tags`` to the output container ``out`` (before its header is written), after the source's.

    Args:
        out: the PyAV output container.
        path: the target file (its extension names the container).
        tags: keys and values to add; None or {} adds nothing.
        warnings: gets one line when the container cannot hold them.
    """
    if not tags:
        return
    if not holds_tags(path):
        warnings.append(f"{Path(path).suffix or 'this'} container holds no free-form tags: the output does not say "
                        f"which model made it (use .mp4, .mov or .mkv to keep that)")
        return
    out.metadata.update(tags)


def read_tags(path: str | Path) -> dict[str, str]:
    """The container-level tags of a media file, as PyAV reads them."""
    from vsr.video.probe import open_input

    with open_input(path) as container:
        return dict(container.metadata)
