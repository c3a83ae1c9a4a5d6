"""Writing a file so that it only ever appears complete: into a hidden temp file in the same folder, then renamed.

The rename is ``os.replace`` within one folder (one filesystem), which POSIX makes atomic: a reader sees the old file
or the whole new one, and a crash, a full disk or Ctrl-C mid-write leaves the target untouched. Every output vsr
writes goes this way: videos (`vsr.video.VideoWriter`, `vsr.video.join_segments`, which stream into
:func:`create_temp` and rename at their close), images, weights, checkpoints, training plots and the resume
manifest (:func:`atomic_write`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from vsr.errors import VsrError


def create_temp(path: str | os.PathLike) -> Path:
    """Creates an empty hidden file beside ``path``: "." + name + ".partial-XXXXXXXX" + the same extension.

    The extension is kept because writers choose the format by it (PIL, FFmpeg's muxers).

    Raises:
        VsrError: the folder cannot be written to.
    """
    path = Path(path)
    # Not tempfile.mkstemp: its 0600 mode would end up on the renamed output; os.open applies the umask.
    for _ in range(100):
        temp = path.parent / f".{path.name}.partial-{secrets.token_hex(4)}{path.suffix}"
        try:
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return temp
        except FileExistsError:
            continue
        except OSError as err:
            raise VsrError(f"cannot write to folder {path.parent}: {err.strerror or err}") from None
    raise VsrError(f"cannot create a temporary file in {path.parent}")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temp file beside ``path`` to write; renames it onto ``path`` when the block ends without an error.

    The temp file is deleted whatever happens (after the rename there is nothing left to delete).
    """
    path = Path(path)
    temp = create_temp(path)
    try:
        yield temp
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
