"""A faster inference graph for the SRResNet family on CPU: same weights, same output to rounding.

``SRResNet`` stays the readable training module; :func:`fast_graph` turns a copy of it into ``FastSRResNet``, which
computes the same function with fewer passes over memory. Profiled on a 2-vCPU Xeon with AMX (bf16, channels_last,
batch 4, 160x120 in, x4), the plain module spends 68 % of its time in convolutions, 15 % in PReLU, 12 % in
``pixel_shuffle`` and 5 % in residual adds, and its 9x9 64->3 output conv runs at a fifth of the conv rate. Here:

* BatchNorm is folded into the convs (exact in eval mode).
* Each conv runs through oneDNN with its weights reordered once into oneDNN's blocked layout
  (``mkldnn._convolution_pointwise``), instead of a reorder on every call; each residual add is fused into the conv
  that produces the branch (oneDNN's binary post-op), so it costs no pass of its own.
* An upsampling conv's output channels are permuted from ``(c, i, j)`` to ``(i, j, c)`` order. In channels_last that
  makes the pixel shuffle a copy of contiguous ``factor * num_feat`` runs instead of a gather of single values, and
  the PReLU after the shuffle (one slope per ``c``) runs before it with its slopes repeated, on the same values.
* The last x2 shuffle is not done at all: the 9x9 ``num_feat -> 3`` conv on the shuffled grid equals a 5x5
  ``4 * num_feat -> 12`` conv on the grid before the shuffle (the "sub-pixel" form: each of the 2x2 output phases
  gets the taps that land on it). That is 1.23x the multiply-adds but 12 output channels instead of 3, which the
  matrix units fill four times better, and the widest tensor of the net (``num_feat`` channels at full output
  resolution) is never written. Only a 3-channel shuffle of the output remains.

* The upsampling tail runs in bands of rows when a whole frame's would be large: its tensors are 4 to 16 times
  wider than the body's (1024 values per LR pixel at x4: 3.4 GB for a 720x576 frame in bf16, 2 GB at 1080p x2),
  so a band is sized to :data:`TAIL_BAND_BYTES` and overlaps its neighbours by the tail's reach (3 LR rows), which
  costs ~2 % more tail work instead of tiling the whole net with the body's 40-pixel reach. The frame's memory is
  then the body's (64 values per pixel) and the output.

Zero padding maps exactly onto the sub-pixel grid, so borders are unchanged; the only differences from the plain
module are float rounding (summation order, bf16 rounding of the folded weights).
"""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from vsr.models.archs import SRResNet
from vsr.models.ops import fold_batchnorm
from vsr.models.recurrent import RecurrentSRResNet, RecurrentState, past_input


# The private oneDNN entry points the graph is built from (torch's inductor uses them on CPU). Not a public API: a
# torch build may lack them, and then the plain module runs instead (see `fast_graph`).
PRIVATE_OPS = ("torch._C._nn.mkldnn_reorder_conv2d_weight", "torch.ops.mkldnn._convolution_pointwise.default",
               "torch.ops.mkldnn._convolution_pointwise.binary")


class FastGraphUnavailable(RuntimeError):
    """This torch cannot run the fast graph (a private oneDNN op is missing or refuses the call)."""


def missing_ops() -> list[str]:
    """Those of :data:`PRIVATE_OPS` this torch does not have."""
    missing = []
    for name in PRIVATE_OPS:
        obj = torch
        try:
            for part in name.split(".")[1:]:
                obj = getattr(obj, part)
        except (AttributeError, RuntimeError):
            missing.append(name)
    return missing


# Bytes of the upsampling tail's widest tensors per band of rows (see the module docstring).
TAIL_BAND_BYTES = 256 * 2**20


def supports(model: nn.Module, device: torch.device) -> bool:
    """Whether :func:`fast_graph` can run ``model`` on ``device``: an SRResNet (or the recurrent one) on a CPU with
    oneDNN."""
    return (isinstance(model, (SRResNet, RecurrentSRResNet)) and device.type == "cpu"
            and torch.backends.mkldnn.is_available())


def fast_graph(model: SRResNet | RecurrentSRResNet, dtype: torch.dtype = torch.float32) -> FastSRResNet:
    """The inference graph of ``model`` in ``dtype`` (fp32 or bf16), for CPU. ``model`` itself is not changed.

    Raises:
        FastGraphUnavailable: this torch lacks one of :data:`PRIVATE_OPS`, or they fail on a trial input (a
            changed signature): the caller runs the plain module instead.
    """
    missing = missing_ops()
    if missing:
        raise FastGraphUnavailable(f"this torch has no {', '.join(missing)}")
    try:
        graph = (FastRecurrentSRResNet if isinstance(model, RecurrentSRResNet) else FastSRResNet)(model, dtype)
        with torch.inference_mode():
            trial = torch.zeros(1, model.conv_first.in_channels, 8, 8, dtype=dtype)
            graph(trial.contiguous(memory_format=torch.channels_last))
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise FastGraphUnavailable(f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}") from None
    return graph


class _Conv:
    """One conv with oneDNN-prepacked weights; ``__call__(x, add=None)`` returns ``conv(x) (+ add)``."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype, example: tuple[int, ...]):
        self.padding = [weight.shape[-1] // 2] * 2
        self.out_channels = weight.shape[0]
        self.bias = None if bias is None else bias.to(dtype)
        # oneDNN's blocked layout for this conv; `example` (N, C, H, W) only steers the layout choice: any input
        # size runs with it.
        self.packed = torch._C._nn.mkldnn_reorder_conv2d_weight(
            weight.to(dtype).contiguous(memory_format=torch.channels_last).to_mkldnn(), self.padding, [1, 1],
            [1, 1], 1, list(example))

    def __call__(self, x: torch.Tensor, add: torch.Tensor | None = None) -> torch.Tensor:
        if x.device.type != "cpu" or not x.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        if add is None:
            return torch.ops.mkldnn._convolution_pointwise(
                x, self.packed, self.bias, self.padding, [1, 1], [1, 1], 1, "none", [], "")
        return torch.ops.mkldnn._convolution_pointwise.binary(
            x, add, self.packed, self.bias, self.padding, [1, 1], [1, 1], 1, "add", None, None, [], None)


def _conv_params(conv: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor | None]:
    return conv.weight.detach().float(), None if conv.bias is None else conv.bias.detach().float()


def _phase_major(weight: torch.Tensor, bias: torch.Tensor, factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Reorders an upsampling conv's output channels from PixelShuffle's ``(c, i, j)`` to ``(i, j, c)``."""
    c = weight.shape[0] // (factor * factor)
    order = torch.arange(c * factor * factor).view(c, factor * factor).t().reshape(-1)
    return weight[order], bias[order]


def _subpixel_conv(weight: torch.Tensor, bias: torch.Tensor | None, factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The conv on a ``factor``-times finer grid as a conv on the coarse grid before the shuffle.

    Input channels of the result are the coarse tensor's in ``(i, j, c)`` order, output channels ``(p, q, o)``: the
    value for output channel ``o`` at fine position ``(factor * y + p, factor * x + q)``. A fine tap ``d`` from
    phase ``p`` reads fine row ``factor * y + p + d - pad``, which is coarse row ``y + t`` in phase ``i`` with
    ``t, i = divmod(p + d - pad, factor)``.
    """
    out_ch, in_ch, k, _ = weight.shape
    pad = k // 2
    reach = -((0 - pad) // factor)  # coarse taps each side
    size = 2 * reach + 1
    f2 = factor * factor
    sub = weight.new_zeros(f2 * out_ch, f2 * in_ch, size, size)
    for p in range(factor):
        for q in range(factor):
            rows = slice((p * factor + q) * out_ch, (p * factor + q + 1) * out_ch)
            for dy in range(k):
                ty, i = divmod(p + dy - pad, factor)
                for dx in range(k):
                    tx, j = divmod(q + dx - pad, factor)
                    cols = slice((i * factor + j) * in_ch, (i * factor + j + 1) * in_ch)
                    sub[rows, cols, ty + reach, tx + reach] += weight[:, :, dy, dx]
    sub_bias = (bias if bias is not None else weight.new_zeros(out_ch)).repeat(f2)
    return sub, sub_bias


def _prelu(x: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
    """PReLU of a channels_last tensor, computed on its (pixels, channels) view: the same values, but torch's kernel
    runs one long loop over it instead of a 64-value inner loop per pixel (on 2 vCPUs of an AMD EPYC, bf16, 64
    channels at 1280x720: 12.8 ms against 22.2 on one thread, 17.5 against 30.4 on two)."""
    n, c, h, w = x.shape
    if not x.is_contiguous(memory_format=torch.channels_last):
        return F.prelu(x, slope)
    return F.prelu(x.permute(0, 2, 3, 1).reshape(n * h * w, c), slope).view(n, h, w, c).permute(0, 3, 1, 2)


def _shuffle(x: torch.Tensor, factor: int) -> torch.Tensor:
    """PixelShuffle of a channels_last tensor whose channels are in ``(i, j, c)`` order: a copy of contiguous runs."""
    n, ch, h, w = x.shape
    c = ch // (factor * factor)
    nhwc = x.permute(0, 2, 3, 1).view(n, h, w, factor, factor, c).permute(0, 1, 3, 2, 4, 5)
    return nhwc.reshape(n, h * factor, w * factor, c).permute(0, 3, 1, 2)


class FastSRResNet(nn.Module):
    """SRResNet's inference graph for CPU (see the module docstring). Build it with :func:`fast_graph`.

    Args:
        model: the SRResNet to copy (BatchNorm folded or not; it is not changed).
        dtype: torch.float32 or torch.bfloat16.
    """

    def __init__(self, model: SRResNet, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        src = fold_batchnorm(copy.deepcopy(model).float().cpu().eval())
        self.scale = src.scale
        self.dtype = dtype
        feat = src.conv_first.out_channels
        example = (1, feat, 64, 64)
        slope = functools.partial(self._slope, dtype=dtype)
        self.conv_first = _Conv(*_conv_params(src.conv_first), dtype, (1, src.conv_first.in_channels, 64, 64))
        self.prelu_first = slope(src.prelu_first)
        self.blocks = [(_Conv(*_conv_params(b.conv1), dtype, example), slope(b.prelu),
                        _Conv(*_conv_params(b.conv2), dtype, example)) for b in src.body]
        self.conv_body = _Conv(*_conv_params(src.conv_body), dtype, example)
        stages = list(src.upsample)
        self.stages = []
        for conv, shuffle, prelu in zip(stages[0::3], stages[1::3], stages[2::3]):
            factor = shuffle.upscale_factor
            weight, bias = _phase_major(*_conv_params(conv), factor)
            self.stages.append((_Conv(weight, bias, dtype, example), slope(prelu).repeat(factor * factor), factor))
        last_w, last_b = _conv_params(src.conv_last)
        self.last_factor = self.stages[-1][2] if self.stages[-1][2] == 2 else 1
        if self.last_factor == 2:
            last_w, last_b = _subpixel_conv(last_w, last_b, 2)
        self.conv_last = _Conv(last_w, last_b, dtype, (1, last_w.shape[1], 64, 64))
        # How far the tail reaches in LR rows: each stage's 3x3 conv on its grid, then the last conv's taps.
        grids = [1]
        for _, _, factor in self.stages[:-1] if self.last_factor == 2 else self.stages:
            grids.append(grids[-1] * factor)
        self.tail_reach = math.ceil(sum(1 / g for g in grids[: len(self.stages)]) + (last_w.shape[-1] // 2) / grids[-1])
        # Values per LR pixel of the tail's two widest tensors (a conv's output and its PReLU).
        self.tail_width = 2 * max(conv.out_channels * g * g for (conv, _, _), g in zip(self.stages, grids))
        self.band_bytes = TAIL_BAND_BYTES
        # The memory estimate's "widest tensor" (vsr.pipeline.memory): three of it bound the body's peak (the block
        # input, the skip, a conv output and its PReLU of 64 values each) and the output frame, bands aside.
        self.activation_width = (4 * feat + 3 * self.scale**2) / 3

    @staticmethod
    def _slope(prelu: nn.PReLU, dtype: torch.dtype) -> torch.Tensor:
        return prelu.weight.detach().float().to(dtype)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, dtype={self.dtype}, blocks={len(self.blocks)}, last_factor={self.last_factor}"

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        return self.upsample(self.trunk(_prelu(self.conv_first(lq), self.prelu_first)))

    def trunk(self, feat: torch.Tensor) -> torch.Tensor:
        """The residual blocks and the global skip, on the LR features."""
        x = feat
        for conv1, prelu, conv2 in self.blocks:
            x = conv2(_prelu(conv1(x), prelu), add=x)
        return self.conv_body(x, add=feat)

    def upsample(self, x: torch.Tensor) -> torch.Tensor:
        """Trunk features -> the output image; in bands of rows where the whole frame's tail would be large."""
        n, _, h, w = x.shape
        rows = max(2 * self.tail_reach, self.band_bytes // max(1, n * w * self.tail_width * x.element_size()))
        if rows >= h:
            return self._tail(x)
        s, r = self.scale, self.tail_reach
        out = None
        for top in range(0, h, rows):
            t0, t1 = max(top - r, 0), min(top + rows + r, h)
            y = self._tail(x[:, :, t0:t1])
            if out is None:
                out = y.new_empty((n, y.shape[1], h * s, w * s)).contiguous(memory_format=torch.channels_last)
            bottom = min(top + rows, h)
            out[:, :, top * s : bottom * s] = y[:, :, (top - t0) * s : (bottom - t0) * s]
        return out

    def _tail(self, x: torch.Tensor) -> torch.Tensor:
        for k, (conv, prelu, factor) in enumerate(self.stages):
            x = _prelu(conv(x), prelu)  # one slope per c, repeated over the (i, j) phases
            if k < len(self.stages) - 1 or self.last_factor == 1:
                x = _shuffle(x, factor)
        x = self.conv_last(x)
        return _shuffle(x, self.last_factor) if self.last_factor > 1 else x


class FastRecurrentSRResNet(FastSRResNet):
    """`RecurrentSRResNet`'s inference graph for CPU: SRResNet's, plus its two recurrent convs (the temporal one
    with the first features added as a post-op). ``step`` as the module's, with the same past (`past_input`).

    Args:
        model: the RecurrentSRResNet to copy (it is not changed).
        dtype: torch.float32 or torch.bfloat16.
    """

    def __init__(self, model: RecurrentSRResNet, dtype: torch.dtype = torch.float32) -> None:
        super().__init__(model, dtype)
        self.num_state, self.out_channels = model.num_state, model.conv_last.out_channels
        self.cut_threshold, self.align_radius = model.cut_threshold, model.align_radius
        feat = model.conv_first.out_channels
        self.conv_temporal = _Conv(*_conv_params(model.conv_temporal), dtype,
                                   (1, model.conv_temporal.in_channels, 64, 64))
        self.conv_state = _Conv(*_conv_params(model.conv_state), dtype, (1, feat, 64, 64))
        # The past (previous frame, output on the LR grid, state) is one more tensor alive with the trunk's.
        self.activation_width += model.conv_temporal.in_channels / 3

    def step(self, lq: torch.Tensor, state: RecurrentState | None = None) -> tuple[torch.Tensor, RecurrentState]:
        first = _prelu(self.conv_first(lq), self.prelu_first)
        past = past_input(lq, state, self.scale, self.num_state, self.out_channels, self.cut_threshold,
                          self.align_radius)
        out = self.trunk(self.conv_temporal(past, add=first))
        sr = self.upsample(out)
        return sr, RecurrentState(lq, sr.clamp(0, 1), torch.tanh(self.conv_state(out)))

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        return self.step(lq)[0]


@functools.cache
def keep_freed_memory() -> bool:
    """Makes glibc keep freed blocks for reuse instead of returning them to the OS (returns whether it could).

    By default glibc serves every allocation over ~32 MiB with a fresh ``mmap`` and unmaps it on free, so each
    large activation of every forward pass is page-faulted and zeroed by the kernel again: on the AMX Xeon that
    doubled the time of a 64->256 conv and made a 40 MB copy 10x slower. Without mmap and with no trimming, freed
    activations are reused at the next batch. The cost is that the process keeps its peak heap until it exits,
    which a long inference run reaches in its first batch anyway. No-op where the C library is not glibc.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 2**31 - 1))
