"""Degradations: how an HR image becomes its LR input, the paper's bicubic downscale or a seeded "realistic" chain
that imitates recorded footage (optics blur, sensor noise, interlaced capture, chroma subsampling, JPEG, MPEG-2 or
H.264 through the real codecs, deinterlacing, and a second round of all that as a re-encoded copy)."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from vsr import video
from vsr.video import recorder
from vsr.data.images import bicubic_downscale, bicubic_resize
from vsr.errors import VsrError

PRESETS = ("bicubic", "realistic")


def _gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a uint8 (H, W, C) image, reflected borders, radius 3 sigma."""
    radius = max(1, math.ceil(3 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-(x**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    k = len(kernel)
    h, w = img.shape[:2]
    padded = np.pad(img.astype(np.float32), ((radius, radius), (radius, radius), (0, 0)), mode="reflect")
    rows = sum(kernel[i] * padded[i : i + h] for i in range(k))
    out = sum(kernel[i] * rows[:, i : i + w] for i in range(k))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


def _shift(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Translates an image by whole pixels, filling the uncovered edge by reflection (camera shake, motion)."""
    if dy == 0 and dx == 0:
        return img
    h, w = img.shape[:2]
    pad = max(abs(dy), abs(dx))
    padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    return np.ascontiguousarray(padded[pad - dy : pad - dy + h, pad - dx : pad - dx + w])


def _srgb_to_linear(v: np.ndarray) -> np.ndarray:
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def _srgb_slope(linear: np.ndarray) -> np.ndarray:
    """d(sRGB value)/d(linear light): 12.92 in the linear toe, steep in the shadows, shallow in the highlights."""
    return np.where(linear <= 0.0031308, 12.92, 1.055 / 2.4 * np.maximum(linear, 0.0031308) ** (1 / 2.4 - 1))


def _camera_noise(lr: np.ndarray, peak: float, read_noise: float, gray: bool, rng: np.random.Generator) -> np.ndarray:
    """Sensor noise as it arises, in linear light: Poisson shot noise (``peak`` photons at white: a dark scene or a
    small sensor means few) plus Gaussian read noise (``read_noise``, linear 0..255 units); each pixel's noise then
    goes through the slope of the camera's sRGB curve, which stretches it in the shadows. The noise is zero-mean
    in the output, so exposure does not change. Returns the noisy image as float32 in 0..255."""
    values = lr.astype(np.float32) / 255.0
    linear = _srgb_to_linear(values.mean(axis=2, keepdims=True) if gray else values)  # gray: one draw for R, G, B
    photons = linear * peak
    noise = (rng.poisson(photons) - photons) / peak + rng.normal(0.0, read_noise / 255.0, size=linear.shape)
    return lr + (noise * _srgb_slope(linear) * 255.0).astype(np.float32)


@dataclass(frozen=True)
class _Draw:
    """The random choices of one degradation, drawn once per image (or per clip, so a clip has one camera)."""

    blur_sigma: float
    noise: str  # "gaussian", "poisson" or "camera"
    poisson_peak: float  # photons at white (Poisson noise)
    noise_sigma: float  # Gaussian noise std
    camera_peak: float  # photons at white (camera noise)
    read_noise: float
    gray_noise: bool
    field_motion: tuple[int, int] | None  # HR pixels the scene moves between the two fields; None: progressive
    deinterlacer: str
    chroma: str | None
    jpeg_quality: int | None
    codec: str | None  # "h264", "mpeg2" or None
    crf: int
    mpeg2_bpp: float
    second: bool  # a second round: blur, resize, noise, H.264 (a copy of a copy)
    first_factor: float  # with a second round, the first one ends this many times larger than the LR
    second_blur: float
    second_noise: float
    second_crf: int


@dataclass
class Degradation:
    """Turns an HR image into its LR input; ``preset="bicubic"`` is the paper, ``"realistic"`` imitates footage.

    ``realistic`` is a recorder chain with every stage seeded and every codec real (FFmpeg through PyAV):

    1. optics: Gaussian blur (``blur_sigma``, HR pixels), then antialiased bicubic down to the LR size (or, when a
       second round follows, to ``first_factor`` times it: the first recording was larger than what we get);
    2. sensor: Gaussian noise, Poisson shot noise, or (``camera_noise_prob``) camera noise in linear light: shot
       noise at ``camera_peak`` photons per white pixel (low light = few) plus read noise, then gamma, so the
       shadows are the noisiest; optionally the same on R, G and B (``gray_noise_prob``);
    3. interlaced capture (``interlace_prob``): the two fields are pictures of the scene ``field_motion`` HR pixels
       apart, woven line by line;
    4. chroma subsampling by swscale (``chroma_prob``): 4:2:0, 4:2:2 or DV's 4:1:1 (``chroma_formats``);
    5. optional JPEG (``jpeg_prob``);
    6. the codec (``video_prob``): MPEG-2 at DVD bitrates (``mpeg2_prob``, ``mpeg2_bpp`` bits per pixel;
       interlaced coding for interlaced clips) or H.264 (``codec`` at ``crf``);
    7. deinterlacing of interlaced clips: bwdif, yadif or line doubling (``deinterlacers``);
    8. second round (``second_order_prob``, as Real-ESRGAN's second-order model): blur (``second_blur``, pixels of
       the first round's size), bicubic to the LR size, Gaussian noise (``second_noise``), H.264 at ``second_crf``:
       a DVR export or an upload of a DVD rip.

    A stage is switched off by a zero probability or a zero range. Defaults keep the stages' probabilities
    moderate so that the plain "downscale + H.264" case stays common.

    How a single training image meets a *video* codec: :meth:`__call__` renders a short clip of ``clip_frames``
    frames, the HR image shifted by up to ``max_shift`` LR pixels (in whole HR pixels, so sub-pixel in LR) for all
    but the last, which is the HR image itself; each frame gets its own noise, the clip goes through the chain and
    the last frame is returned. It is inter-coded (predicted from its neighbours), so it carries the
    motion-compensated blocking and ringing of real streams, and a motion-adaptive deinterlacer sees real
    neighbours. :meth:`degrade_clip` instead degrades a run of real consecutive frames and encodes them together.

    The ``preset="bicubic"`` degradation ignores every other field and the generator.
    """

    preset: str = "bicubic"
    blur_sigma: tuple[float, float] = (0.2, 2.0)
    noise_sigma: tuple[float, float] = (0.0, 10.0)  # Gaussian noise std, in 0..255 units
    poisson_prob: float = 0.3  # chance the (non-camera) noise is Poisson (shot) noise instead of Gaussian
    poisson_peak: tuple[float, float] = (200.0, 2000.0)  # photons at white level: lower = noisier
    camera_noise_prob: float = 0.3  # chance of linear-light shot + read noise instead of the two above
    camera_peak: tuple[float, float] = (30.0, 1000.0)  # photons at white, drawn log-uniformly: 30 = very low light
    read_noise: tuple[float, float] = (0.0, 1.0)  # read noise std in linear 0..255 units (large after gamma)
    gray_noise_prob: float = 0.4  # chance the noise is the same on R, G and B (luma-only sensor noise)
    interlace_prob: float = 0.25
    field_motion: tuple[float, float] = (0.0, 6.0)  # HR pixels between the two fields of a frame
    deinterlacers: tuple[str, ...] = recorder.DEINTERLACERS
    chroma_prob: float = 0.3
    chroma_formats: tuple[str, ...] = ("yuv420p", "yuv411p")
    jpeg_prob: float = 0.3
    jpeg_quality: tuple[int, int] = (40, 95)
    video_prob: float = 1.0
    mpeg2_prob: float = 0.3  # of the coded clips, the share coded as MPEG-2 instead of H.264
    mpeg2_bpp: tuple[float, float] = recorder.DVD_BITS_PER_PIXEL
    crf: tuple[int, int] = (18, 35)
    codec: str = "libx264"
    codec_preset: str = "veryfast"
    second_order_prob: float = 0.4
    first_factor: tuple[float, float] = (1.0, 2.0)
    second_blur: tuple[float, float] = (0.2, 1.2)
    second_noise: tuple[float, float] = (0.0, 4.0)
    second_crf: tuple[int, int] = (20, 32)
    clip_frames: int = 3
    max_shift: int = 2

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise VsrError(f"unknown degradation {self.preset!r}; choose one of: {', '.join(PRESETS)}")
        ranges = ("blur_sigma", "noise_sigma", "poisson_peak", "camera_peak", "read_noise", "field_motion",
                  "jpeg_quality", "mpeg2_bpp", "crf", "first_factor", "second_blur", "second_noise", "second_crf")
        for name in ranges:
            low, high = getattr(self, name)
            setattr(self, name, (low, high))  # lists from a TOML config become tuples
            if not 0 <= low <= high:
                raise VsrError(f"degradation range {name}={low},{high} must satisfy 0 <= low <= high")
        probabilities = ("poisson_prob", "camera_noise_prob", "gray_noise_prob", "interlace_prob", "chroma_prob",
                         "jpeg_prob", "video_prob", "mpeg2_prob", "second_order_prob")
        for name in probabilities:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise VsrError(f"degradation probability {name}={getattr(self, name)} must be in [0, 1]")
        for name in ("poisson_peak", "camera_peak", "mpeg2_bpp"):
            if getattr(self, name)[0] <= 0:
                raise VsrError(f"degradation range {name} must be above 0")
        if self.first_factor[0] < 1:
            raise VsrError("degradation range first_factor must be at least 1 (the first round is not smaller)")
        self.deinterlacers, self.chroma_formats = tuple(self.deinterlacers), tuple(self.chroma_formats)
        for name, allowed in (("deinterlacers", recorder.DEINTERLACERS), ("chroma_formats", recorder.CHROMA_FORMATS)):
            values = getattr(self, name)
            if not values or set(values) - set(allowed):
                raise VsrError(f"degradation {name}={list(values)} must be a non-empty subset of {list(allowed)}")
        if self.clip_frames < 1 or self.max_shift < 0:
            raise VsrError("degradation needs clip_frames >= 1 and max_shift >= 0")

    def __call__(self, hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
        """Degrades one image.

        Args:
            hr: (H, W, 3) uint8 RGB. A bottom/right remainder that is not a multiple of ``scale`` is cropped.
            scale: Downscaling factor.
            rng: Source of every random choice; the same generator state gives the same output.

        Returns:
            (H // scale, W // scale, 3) uint8 RGB.
        """
        if self.preset == "bicubic":
            return bicubic_downscale(hr, scale)
        h, w = hr.shape[:2]
        hr = hr[: h - h % scale, : w - w % scale]
        draw = self._draw(rng)
        # The jitter is drawn even when a one-frame clip would not use it, so toggling a stage keeps the draws aligned.
        limit = self.max_shift * scale
        shifts = rng.integers(-limit, limit + 1, size=(self.clip_frames - 1, 2))
        blurred = _gaussian_blur(hr, draw.blur_sigma) if draw.blur_sigma > 0 else hr
        temporal = draw.codec is not None or draw.field_motion is not None or draw.second
        scenes = [_shift(blurred, int(dy), int(dx)) for dy, dx in shifts] if temporal else []
        return self._record(scenes + [blurred], scale, draw, rng)[-1]

    def degrade_clip(self, frames: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
        """Degrades a run of consecutive frames as one piece of footage.

        Every choice (blur, noise kind and level, interlacing, chroma, codec and quality, second round) is drawn
        once for the whole clip (one camera, one recorder); the noise itself is drawn anew for each frame; the
        frames are then coded together, so frames after the first are inter-coded against their real neighbours.

        Args:
            frames: (N, H, W, 3) uint8 RGB.
            scale: Downscaling factor.
            rng: Source of every random choice.

        Returns:
            (N, H // scale, W // scale, 3) uint8 RGB.
        """
        if self.preset == "bicubic":
            return np.stack([bicubic_downscale(f, scale) for f in frames])
        h, w = frames.shape[1:3]
        frames = frames[:, : h - h % scale, : w - w % scale]
        draw = self._draw(rng)
        rng.integers(0, 1, size=(self.clip_frames - 1, 2))  # the jitter __call__ draws, for the same stream
        blurred = [_gaussian_blur(f, draw.blur_sigma) if draw.blur_sigma > 0 else f for f in frames]
        return self._record(blurred, scale, draw, rng)

    def _draw(self, rng: np.random.Generator) -> _Draw:
        # A fixed number of draws in a fixed order, whatever the outcome, so results depend only on the seed.
        blur_sigma = rng.uniform(*self.blur_sigma)
        kind = rng.random()
        use_poisson = rng.random() < self.poisson_prob
        poisson_peak = rng.uniform(*self.poisson_peak)
        noise_sigma = rng.uniform(*self.noise_sigma)
        camera_peak = float(np.exp(rng.uniform(*np.log(self.camera_peak))))
        read_noise = rng.uniform(*self.read_noise)
        gray_noise = rng.random() < self.gray_noise_prob
        interlaced = rng.random() < self.interlace_prob
        motion, angle = rng.uniform(*self.field_motion), rng.uniform(0, 2 * math.pi)
        deinterlacer = self.deinterlacers[int(rng.integers(len(self.deinterlacers)))]
        use_chroma = rng.random() < self.chroma_prob
        chroma = self.chroma_formats[int(rng.integers(len(self.chroma_formats)))]
        use_jpeg = rng.random() < self.jpeg_prob
        jpeg_quality = int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1))
        use_video = rng.random() < self.video_prob
        use_mpeg2 = rng.random() < self.mpeg2_prob
        crf = int(rng.integers(self.crf[0], self.crf[1] + 1))
        mpeg2_bpp = float(np.exp(rng.uniform(*np.log(self.mpeg2_bpp))))
        second = rng.random() < self.second_order_prob
        first_factor = rng.uniform(*self.first_factor)
        second_blur = rng.uniform(*self.second_blur)
        second_noise = rng.uniform(*self.second_noise)
        second_crf = int(rng.integers(self.second_crf[0], self.second_crf[1] + 1))
        return _Draw(
            blur_sigma=blur_sigma,
            noise="camera" if kind < self.camera_noise_prob else "poisson" if use_poisson else "gaussian",
            poisson_peak=poisson_peak,
            noise_sigma=noise_sigma,
            camera_peak=camera_peak,
            read_noise=read_noise,
            gray_noise=gray_noise,
            field_motion=(round(motion * math.sin(angle)), round(motion * math.cos(angle))) if interlaced else None,
            deinterlacer=deinterlacer,
            chroma=chroma if use_chroma else None,
            jpeg_quality=jpeg_quality if use_jpeg else None,
            codec=None if not use_video else "mpeg2" if use_mpeg2 else "h264",
            crf=crf,
            mpeg2_bpp=mpeg2_bpp,
            second=second,
            first_factor=first_factor if second else 1.0,
            second_blur=second_blur,
            second_noise=second_noise,
            second_crf=second_crf,
        )

    def _sense(self, scene: np.ndarray, size: tuple[int, int], draw: _Draw, rng: np.random.Generator) -> np.ndarray:
        """Blurred HR scene -> what the sensor records at ``size`` (w, h): downscale, then noise; uint8."""
        lr = bicubic_resize(scene, *size)
        if draw.noise == "camera":
            noisy = _camera_noise(lr, draw.camera_peak, draw.read_noise, draw.gray_noise, rng)
        elif draw.noise == "poisson":
            # Shot noise on the encoded values: photon counts are Poisson with mean proportional to the signal.
            signal = lr.astype(np.float32)
            signal = signal.mean(axis=2, keepdims=True) if draw.gray_noise else signal
            photons = signal / 255.0 * draw.poisson_peak
            noisy = lr + (rng.poisson(photons) - photons) / draw.poisson_peak * 255.0
        else:
            channels = 1 if draw.gray_noise else 3
            noise = rng.normal(0.0, 1.0, size=(*lr.shape[:2], channels)).astype(np.float32) * draw.noise_sigma
            noisy = lr + noise
        return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)

    def _record(self, scenes: list[np.ndarray], scale: int, draw: _Draw, rng: np.random.Generator) -> np.ndarray:
        """Blurred HR frames of one clip -> their LR frames, through sensor, recorder and (maybe) a second round."""
        height, width = scenes[0].shape[0] // scale, scenes[0].shape[1] // scale
        size = (max(1, round(width * draw.first_factor)), max(1, round(height * draw.first_factor)))
        if draw.field_motion is None:
            frames = [self._sense(s, size, draw, rng) for s in scenes]
        else:  # each frame's bottom field sees the scene a field period later, moved by field_motion
            frames = [recorder.weave(self._sense(s, size, draw, rng), self._sense(_shift(s, *draw.field_motion),
                                                                               size, draw, rng)) for s in scenes]
        if draw.chroma is not None:
            frames = [recorder.subsample_chroma(f, draw.chroma) for f in frames]
        if draw.jpeg_quality is not None:
            frames = [_jpeg(f, draw.jpeg_quality) for f in frames]
        clip = np.stack(frames)
        if draw.codec == "mpeg2":
            clip = recorder.mpeg2_round_trip(clip, draw.mpeg2_bpp, interlaced=draw.field_motion is not None)
        elif draw.codec == "h264":
            clip = self._compress(clip, draw.crf)
        if draw.field_motion is not None:
            clip = recorder.deinterlace(clip, draw.deinterlacer)
        if not draw.second:
            return clip
        out = []
        for frame in clip:
            frame = _gaussian_blur(frame, draw.second_blur) if draw.second_blur > 0 else frame
            frame = bicubic_resize(frame, width, height).astype(np.float32)
            channels = 1 if draw.gray_noise else 3
            frame += rng.normal(0.0, draw.second_noise, size=(height, width, channels)).astype(np.float32)
            out.append(np.clip(np.rint(frame), 0, 255).astype(np.uint8))
        return self._compress(np.stack(out), draw.second_crf)

    def _compress(self, frames: np.ndarray, crf: int) -> np.ndarray:
        return video.encode_decode(np.ascontiguousarray(frames), codec=self.codec, crf=crf, preset=self.codec_preset)
