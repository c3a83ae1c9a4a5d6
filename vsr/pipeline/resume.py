"""`--resume`: encode a video as segments in a state folder beside the target, so a killed run can continue.

The state folder is ``.<target name>.vsr-resume/`` beside the target. It holds ``manifest.json``, a ``lock``, the
input's frame index ``index.json`` (every frame's pts, from its packets: `video.index_video`) and the finished
segments ``seg-00000.mp4``, ``seg-00001.mp4``, ... (``.mov`` for non-MP4 targets: see `video.segment_suffix`). Each
segment is our own encode of ``segment_frames`` consecutive frames (video only, original pts), written by
`VideoWriter` to a temp file and renamed, so a segment file that exists is complete; the manifest is rewritten
(temp + rename) after each one, so it never names a partial file. This module keeps the state;
`vsr.pipeline.sinks.SegmentSink` writes the segments into it and joins them.

A later run with ``--resume`` checks that the input (path, size, mtime), the model (a hash of its weights) and every
setting that changes the segments' content are those of the manifest, and refuses with one line naming the first
difference otherwise: finished work is never thrown away behind the user's back (deleting the folder starts over).
It then decodes from the frame after the last finished one (a window of the index: from a keyframe early enough
that this frame is certainly decoded, checked to be the one the index lists), and redoes only the unfinished
segment. When every frame is done, `video.join_segments` remuxes the segments and the source's other streams into
a file inside the state folder; that file is checked against the index (every frame's pts, read back from its
packets) and renamed onto the target, and the state folder is removed. The target path only ever appears complete.

Distributed runs (`vsr.pipeline.distributed`) write segments out of order from several processes: each finished
segment also gets a record ``seg-NNNNN.json`` (`write_record`, temp + rename, after its video file), since only
the process holding the lock writes the manifest. Records are merged into the manifest when the state is loaded
(and by `ResumeState.adopt_records`). A ``sparse`` state keeps every segment whose file is there; a plain one
keeps the unbroken run from ``seg-00000`` on, so single-process ``--resume`` can continue a distributed run.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from vsr.atomic import atomic_write
from vsr.errors import VsrError

MANIFEST = "manifest.json"
INDEX = "index.json"  # the input's frame index (`video.FrameIndex`), kept so that a rerun need not demux again
VERSION = 1
RECORD_SUFFIX = ".json"


def segment_name(index: int, suffix: str) -> str:
    """File name of segment ``index`` (0-based) in a state folder."""
    return f"seg-{index:05d}{suffix}"


def segment_index(name: str) -> int:
    """The index in a `segment_name`."""
    return int(name[4:9])


def state_dir(target: Path) -> Path:
    """Where the resume state of ``target`` lives."""
    return target.parent / f".{target.name}.vsr-resume"


def model_identity(model: nn.Module) -> dict:
    """The model as the manifest records it: arch, args and a SHA-256 of every weight (name, dtype, shape, bytes)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    args = getattr(model, "args", None)
    return {
        "arch": getattr(model, "arch", type(model).__name__),
        "args": json.loads(json.dumps(args, default=str)) if isinstance(args, dict) else None,
        "scale": int(model.scale),
        "sha256": digest.hexdigest(),
    }


def input_identity(path: Path) -> dict:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


@dataclass
class Segment:
    file: str
    frames: int
    first_pts: int
    last_pts: int


def write_record(folder: Path, segment: Segment) -> None:
    """Records a finished segment (its file already renamed into place) beside it, for the lock holder to adopt."""
    record = folder / (Path(segment.file).stem + RECORD_SUFFIX)
    try:
        with atomic_write(record) as temp:
            temp.write_text(json.dumps(vars(segment)))
    except OSError as err:
        raise VsrError(f"cannot write resume state {folder}: {err.strerror or err}") from None


class ResumeState:
    """The state folder of one target: its manifest, finished segments and an exclusive lock.

    Args:
        target: the final output file.
        identity: ``{"input": ..., "model": ..., "settings": ...}``; must equal a found manifest's.
        suffix: the segments' file extension (`video.segment_suffix`).
        sparse: keep finished segments after a gap (distributed runs fill the gaps); else only the unbroken run.
    """

    def __init__(self, target: Path, identity: dict, suffix: str, sparse: bool = False):
        self.target = target
        self.sparse = sparse
        self.suffix = suffix
        self.dir = state_dir(target)
        self.identity = identity
        self.segments: list[Segment] = []
        self.finished = False
        self._lock = None
        try:
            self.dir.mkdir(exist_ok=True)
        except OSError as err:
            raise VsrError(f"cannot create resume state {self.dir}: {err.strerror or err}") from None
        self._take_lock()
        self._load()

    def _take_lock(self) -> None:
        # flock, not a lock file's existence: the kernel drops it when a process dies, even by SIGKILL.
        try:
            self._lock = open(self.dir / "lock", "w")
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise VsrError(f"another vsr is working on {self.target} (its resume state {self.dir} is locked)") from None
        except OSError as err:
            raise VsrError(f"cannot use resume state {self.dir}: {err.strerror or err}") from None

    def _load(self) -> None:
        path = self.dir / MANIFEST
        if path.exists():
            try:
                data = json.loads(path.read_text())
                segments = [Segment(**s) for s in data["segments"]]
                found = {key: data[key] for key in self.identity}
                finished = bool(data.get("finished"))
            except (OSError, ValueError, KeyError, TypeError) as err:
                raise VsrError(f"resume state {self.dir} is damaged ({type(err).__name__}: {err}); delete that folder "
                               "to start over") from None
            self._check_identity(found)
            self._merge(segments)
            self.finished = finished and len(self.segments) == len(segments)
        self._remove_strays()
        self.save()

    def _merge(self, listed: list[Segment]) -> None:
        """Sets ``segments`` from the manifest's list and the records of finished segments, in index order."""
        found = {seg.file: seg for seg in listed}
        for record in self.dir.glob("seg-*" + RECORD_SUFFIX):
            try:
                seg = Segment(**json.loads(record.read_text()))
            except (OSError, ValueError, TypeError):
                continue  # a damaged record: its segment is redone
            found.setdefault(seg.file, seg)
        self.segments = []
        for name in sorted(found, key=segment_index):
            file = self.dir / name
            if not file.is_file() or file.stat().st_size == 0:
                if self.sparse:
                    continue
                break
            if not self.sparse and name != segment_name(len(self.segments), self.suffix):
                break  # anything after a gap is redone
            self.segments.append(found[name])

    def adopt_records(self) -> None:
        """Merges the records other processes wrote since the load into the manifest, and deletes them."""
        self._merge(self.segments)
        self.save()
        for record in self.dir.glob("seg-*" + RECORD_SUFFIX):
            record.unlink(missing_ok=True)

    def _check_identity(self, found: dict) -> None:
        if found["input"] != self.identity["input"]:
            raise VsrError(f"{self.identity['input']['path']} changed since the resume state {self.dir} was made "
                           "(size or modification time differ); delete that folder to start over")
        if found["model"] != self.identity["model"]:
            raise VsrError(f"resume state {self.dir} was made with another model "
                           f"({found['model'].get('arch')}, weights {found['model'].get('sha256', '')[:12]}); "
                           "use the same model, or delete that folder to start over")
        for key, new in self.identity["settings"].items():
            old = found["settings"].get(key)
            if old != new:
                shown = ["default" if value is None else value for value in (old, new)]
                raise VsrError(f"resume state {self.dir} was made with {key} = {shown[0]}, this run has {shown[1]}; "
                               "rerun with the same options, or delete that folder to start over")

    def _remove_strays(self) -> None:
        """Deletes what a killed run left half done: temp files, segments the manifest does not list, a partial join."""
        keep = {MANIFEST, INDEX, "lock"} | {seg.file for seg in self.segments}
        for entry in self.dir.iterdir():
            if entry.name not in keep:
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)

    @property
    def frames(self) -> int:
        return sum(seg.frames for seg in self.segments)

    @property
    def last_pts(self) -> int | None:
        return self.segments[-1].last_pts if self.segments else None

    def segment_path(self, index: int) -> Path:
        return self.dir / segment_name(index, self.suffix)

    def add(self, segment: Segment) -> None:
        self.segments.append(segment)
        self.save()

    def save(self) -> None:
        data = {"vsr_resume": VERSION, "target": self.target.name, **self.identity,
                "segments": [vars(seg) for seg in self.segments], "finished": self.finished}
        try:
            with atomic_write(self.dir / MANIFEST) as temp:
                temp.write_text(json.dumps(data, indent=1))
        except OSError as err:
            raise VsrError(f"cannot write resume state {self.dir}: {err.strerror or err}") from None

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def remove(self) -> None:
        self.release()
        shutil.rmtree(self.dir, ignore_errors=True)

    def describe(self) -> str:
        """What an interruption leaves behind, for the one-line message."""
        if not self.segments:
            return "no segment was finished, nothing kept"
        return (f"{len(self.segments)} finished segment(s) ({self.frames} frames) kept in {self.dir}; "
                "rerun with --resume to continue")
