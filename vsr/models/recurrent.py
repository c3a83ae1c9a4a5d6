"""A streaming multi-frame network: SRResNet with a state carried from frame to frame.

``RecurrentSRResNet`` ("rsrresnet") sees, at frame t, the LR frame ``lq_t``, the previous LR frame, its own previous
output (space-to-depth'd back to the LR grid) and a hidden state of ``num_state`` LR channels, as the forward-only
recurrent designs do (FRVSR, RLSP, RRN: see ``shared/notes/temporal_vsr.md``). There is no optical flow: alignment
is left to the network, as in RLSP and RRN, which keeps the cost per frame below SRResNet's and suits the fixed
cameras our users bring, where most of a frame does not move. It looks at no future frame (zero delay).

Everything SRResNet has keeps its name and shape (``conv_first``, ``body``, ``conv_body``, ``bn_body``,
``upsample``, ``conv_last``), so a shipped SRResNet file initialises it. The only new layers are ``conv_temporal``
(the previous frame, output and state -> features added to ``conv_first``'s) and ``conv_state`` (features -> the
next state). ``conv_temporal`` starts at zero, so before training the network *is* the per-frame SRResNet it was
initialised from (less the residual blocks it drops to pay for the new layers: one by default) and training starts
where that model is.

Costs, per LR pixel (multiply-adds): SRResNet x4 (16 blocks) 2.22 M; this network with 15 blocks and a 32-channel
state 2.21 M (the dropped block pays for ``conv_temporal`` and ``conv_state``).

A scene cut (the mean absolute difference of 8x8-block means of two consecutive frames above ``cut_threshold``)
resets a stream's state before the frame is used, so the first frame of a new shot is upscaled from itself alone,
as it is at the start of a video; the network is trained on such starts (the first frame of every training
sequence has no past).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vsr.models.archs import ResidualBlock, check_scale, init_residual_branches, srresnet_upsampler


@dataclass
class RecurrentState:
    """What one step hands to the next, for N independent streams (tiles or clips): the LR frame, the output
    (clamped to [0, 1]) and the hidden features."""

    lq: torch.Tensor  # (N, 3, h, w)
    sr: torch.Tensor  # (N, 3, h * scale, w * scale)
    hidden: torch.Tensor  # (N, num_state, h, w)

    def to(self, *args, **kwargs) -> RecurrentState:
        return RecurrentState(self.lq.to(*args, **kwargs), self.sr.to(*args, **kwargs),
                              self.hidden.to(*args, **kwargs))


class RecurrentSRResNet(nn.Module):
    """Forward-recurrent SRResNet: per-frame SRResNet plus a state from the previous frame (see the module doc).

    ``forward`` takes one frame batch (N, 3, h, w) -> (N, 3, h * s, w * s) with no past (as a per-frame model), or a
    sequence batch (N, T, 3, h, w) -> (N, T, 3, h * s, w * s), run in time order from no past (training). Streaming
    callers use :meth:`step`, which carries the state between calls.

    Args:
        num_in_ch: input channels.
        num_out_ch: output channels.
        num_feat: feature channels (64, as SRResNet).
        num_block: residual blocks (15: SRResNet's 16 less one, which pays for the recurrent layers).
        num_state: hidden state channels at LR.
        scale: upscaling factor, one of 2, 3, 4, 8.
        cut_threshold: scene-cut test on [0, 1] values (see the module doc); 0 disables it.
    """

    recurrent = True
    # Frames a stream needs before its output is at steady state: RRN's logs show within 0.2 dB after 3-11 frames.
    warmup_frames = 8
    align_radius = 0  # no motion compensation of the past (see AlignedRecurrentSRResNet)

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_block: int = 15,
                 num_state: int = 32, scale: int = 4, cut_threshold: float = 0.1) -> None:
        super().__init__()
        self.scale = check_scale(scale)
        self.num_state = num_state
        self.cut_threshold = cut_threshold
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 9, 1, 4)
        self.prelu_first = nn.PReLU(num_feat)
        # The past: this frame and the previous one (so motion is visible), the previous output on the LR grid
        # (pixel-unshuffled: scale^2 * channels) and the hidden state.
        temporal_in = 2 * num_in_ch + num_out_ch * scale * scale + num_state
        self.conv_temporal = nn.Conv2d(temporal_in, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(ResidualBlock(num_feat) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=False)
        self.bn_body = nn.BatchNorm2d(num_feat)
        self.conv_state = nn.Conv2d(num_feat, num_state, 3, 1, 1)
        self.upsample = srresnet_upsampler(num_feat, scale)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 9, 1, 4)
        init_residual_branches(self.body)  # as SRResNet
        # Zero: the untrained past adds nothing, so the network starts as the per-frame one.
        nn.init.zeros_(self.conv_temporal.weight)
        nn.init.zeros_(self.conv_temporal.bias)

    def train(self, mode: bool = True) -> RecurrentSRResNet:
        """As ``nn.Module.train``, but BatchNorm keeps using its running statistics: the network is fine-tuned from a
        per-frame SRResNet whose statistics are sound, with batches of a few sequences, whose per-step statistics
        are not (and a BN in train mode would see each time step's N crops apart). BN's affine weights still learn."""
        super().train(mode)
        for m in self.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.SyncBatchNorm)):
                m.eval()
        return self

    def past_parameters(self) -> list[nn.Parameter]:
        """The layers that read the past into the network and write the state for the next frame."""
        return [*self.conv_temporal.parameters(), *self.conv_state.parameters()]

    def past(self, lq: torch.Tensor, state: RecurrentState | None) -> torch.Tensor:
        """The input of ``conv_temporal`` for frame ``lq``: the past of each stream, or none where a stream starts
        (``state`` None) or its frame starts a new shot (see :func:`scene_cut`)."""
        return past_input(lq, state, self.scale, self.num_state, self.conv_last.out_channels, self.cut_threshold,
                          self.align_radius)

    def step(self, lq: torch.Tensor, state: RecurrentState | None = None) -> tuple[torch.Tensor, RecurrentState]:
        """One frame of N streams.

        Args:
            lq: (N, 3, h, w) in [0, 1].
            state: what the previous step returned for the same N streams (same h, w), or None at the start.

        Returns:
            The output (N, 3, h * scale, w * scale), not clamped, and the state for the next frame.
        """
        feat = self.prelu_first(self.conv_first(lq)) + self.conv_temporal(self.past(lq, state))
        out = self.bn_body(self.conv_body(self.body(feat))) + feat
        hidden = torch.tanh(self.conv_state(out))  # bounded: the state cannot grow over a long video
        sr = self.conv_last(self.upsample(out))
        return sr, RecurrentState(lq, sr.clamp(0, 1), hidden)

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        if lq.dim() == 4:
            return self.step(lq)[0]
        state, outs = None, []
        for t in range(lq.shape[1]):
            sr, state = self.step(lq[:, t], state)
            outs.append(sr)
        return torch.stack(outs, dim=1)


class AlignedRecurrentSRResNet(RecurrentSRResNet):
    """``rsrresnet`` whose past is motion-compensated before the network sees it ("arsrresnet").

    Measured on the shipped ``rsrresnet_real_x4`` (scripts/state_warmup.py): its state was worth nothing (-0.007 dB
    against the same network with the state reset at every frame). Under a codec, what does not move is copied from
    frame to frame with the same error, so the unaligned past adds nothing there; what moves needs alignment, which
    one 3x3 convolution at the input cannot learn. Here the previous LR frame, output and state are warped onto the
    current frame by block matching on LR luma (:func:`block_motion`: no learned flow, nothing to train, about 0.1 %
    of the network's cost), as FRVSR warps them with its learned flow. Same layers as ``rsrresnet``, so its files
    initialise this one.

    Args:
        align_radius: largest motion searched, LR pixels per frame (7: 28 HR pixels at x4; beyond 3 the search is
            coarse to fine, see :func:`block_motion`).
        **kwargs: as :class:`RecurrentSRResNet`.
    """

    def __init__(self, align_radius: int = 7, **kwargs) -> None:
        super().__init__(**kwargs)
        if align_radius < 1:
            raise ValueError(f"align_radius must be at least 1, got {align_radius}")
        self.align_radius = align_radius


def _luma(rgb: torch.Tensor) -> torch.Tensor:
    weights = rgb.new_tensor([0.299, 0.587, 0.114], dtype=torch.float32).view(1, 3, 1, 1)
    return (rgb.float() * weights).sum(1, keepdim=True)


COARSE_MOTIONS = 6  # displacements refined at full size when the search is coarse to fine (see _commonest)


def block_motion(lq: torch.Tensor, previous: torch.Tensor, radius: int, window: int = 7,
                 small_motion_bias: float = 0.002) -> torch.Tensor:
    """Where each LR pixel of ``lq`` was in ``previous``: (N, 2, h, w) displacements (x, y) in pixels, fp32.

    Block matching on luma: the mean absolute difference over a ``window`` square at every whole displacement up to
    ``radius``, the least one refined to a fraction of a pixel by a parabola through its neighbours (not where it is
    zero: a fixed camera's still background stays exactly in place). A displacement costs ``small_motion_bias`` per
    pixel of length, so flat or noisy patches, which match anything about as well, stay where they are.

    Up to a radius of 3 every displacement is tried. Beyond, the search is coarse to fine: every displacement up to
    ``radius // 2`` on frames halved by 2x2 means, then +-1 pixel around twice the one found (or the nearest of the
    batch's ``COARSE_MOTIONS`` commonest), at full size. A passing car in 720p footage at x4 moves 4-6 LR pixels per
    frame (scripts/temporal_headroom.py), out of radius 3's reach.
    """
    y, prev = _luma(lq), _luma(previous)
    h, w = y.shape[-2:]
    if radius <= 3 or min(h, w) < 2 * window:
        return _best(_shift_costs(y, prev, radius, window, small_motion_bias), radius)
    small = radius // 2
    half = _best(_shift_costs(F.avg_pool2d(y, 2, ceil_mode=True), F.avg_pool2d(prev, 2, ceil_mode=True), small,
                              window, small_motion_bias), small, subpixel=False)
    coarse = 2 * F.interpolate(_commonest(half, COARSE_MOTIONS), scale_factor=2.0, mode="nearest")[..., :h, :w]
    # Each window is compared at its own centre's coarse motion: one pass per coarse motion kept.
    costs = torch.full((y.shape[0], 9, h, w), math.inf, device=y.device)
    for cx, cy in torch.unique(coarse.permute(0, 2, 3, 1).reshape(-1, 2), dim=0).tolist():
        mine = (coarse[:, :1] == cx) & (coarse[:, 1:] == cy)
        costs = torch.where(mine, _shift_costs(y, prev, 1, window, small_motion_bias, (int(cx), int(cy))), costs)
    return coarse + _best(costs, 1, moved=(coarse != 0).any(dim=1, keepdim=True))


def _commonest(motion: torch.Tensor, count: int) -> torch.Tensor:
    """``motion`` (N, 2, h, w), whole pixels, with each displacement replaced by the nearest of the ``count`` most
    common ones in the batch (zero always among them). Flat or noisy patches scatter a frame's coarse motion over
    dozens of displacements; what moves takes a few, and the fine search then costs 9 tries per one kept."""
    found, counts = torch.unique(motion.permute(0, 2, 3, 1).reshape(-1, 2), dim=0, return_counts=True)
    if len(found) <= count:
        return motion
    by_count = found[counts.argsort(descending=True)]
    kept = torch.cat([motion.new_zeros((1, 2)), by_count[(by_count != 0).any(dim=1)][: count - 1]])
    distance = (motion.unsqueeze(1) - kept.view(1, -1, 2, 1, 1)).abs().sum(dim=2)  # (N, count, h, w)
    return kept[distance.argmin(dim=1)].permute(0, 3, 1, 2)


def _shift_costs(y: torch.Tensor, prev: torch.Tensor, radius: int, window: int, small_motion_bias: float,
                 origin: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """(N, (2 * radius + 1)^2, h, w): for every whole displacement up to ``radius`` from ``origin`` (x, y), the mean
    absolute difference of luma ``y`` and ``prev`` moved by it over a ``window`` square, plus its length's bias."""
    h, w = y.shape[-2:]
    pad = radius + max(abs(origin[0]), abs(origin[1]))
    padded = F.pad(prev, (pad, pad, pad, pad), mode="replicate")
    steps = range(-radius, radius + 1)
    shifts = [(origin[1] + dy, origin[0] + dx) for dy in steps for dx in steps]
    costs = torch.cat([(y - padded[:, :, pad + dy : pad + dy + h, pad + dx : pad + dx + w]).abs()
                       for dy, dx in shifts], dim=1)
    lengths = costs.new_tensor([math.hypot(dy, dx) for dy, dx in shifts]).view(1, -1, 1, 1)
    return _box_mean(costs, window) + small_motion_bias * lengths


def _best(costs: torch.Tensor, radius: int, subpixel: bool = True, moved: torch.Tensor | None = None) -> torch.Tensor:
    """(N, 2, h, w) displacement (x, y) of the least of ``costs`` (:func:`_shift_costs`), refined to a fraction of a
    pixel by a parabola where it moved (or where ``moved`` says the patch did before this search)."""
    k = 2 * radius + 1
    best = costs.argmin(dim=1, keepdim=True)
    by, bx = best // k - radius, best % k - radius
    if not subpixel:
        return torch.cat([bx, by], dim=1).float()
    c0 = costs.gather(1, best)
    still = (bx == 0) & (by == 0)  # still patches stay exactly still: no sub-pixel jitter to blur a fixed scene
    moving = ~still if moved is None else ~still | moved

    def refine(b: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        inside = moving & (b > -radius) & (b < radius)  # both neighbours searched
        minus = costs.gather(1, (best - step).clamp(0, k * k - 1))
        plus = costs.gather(1, (best + step).clamp(0, k * k - 1))
        curve = minus - 2 * c0 + plus
        offset = 0.5 * (minus - plus) / curve.clamp_min(1e-6)
        return torch.where(inside & (curve > 1e-6), offset.clamp(-0.5, 0.5), torch.zeros_like(offset))

    fx = bx.float() + refine(bx, torch.ones_like(best))
    fy = by.float() + refine(by, torch.full_like(best, k))
    return torch.cat([fx, fy], dim=1)


def _box_mean(x: torch.Tensor, window: int) -> torch.Tensor:
    """Mean over a ``window`` square around each pixel (edges repeated), by running sums along each axis: several
    times faster than avg_pool2d on CPU, and exact enough in fp32 (a sum runs along one row or column only)."""
    half = window // 2
    x = F.pad(x, (half, half, half, half), mode="replicate")
    for dim in (-1, -2):
        total = torch.cumsum(x, dim=dim)
        total = torch.cat([torch.zeros_like(total.narrow(dim, 0, 1)), total], dim=dim)
        length = total.shape[dim] - window
        x = total.narrow(dim, window, length) - total.narrow(dim, 0, length)
    return x / (window * window)


def warp(image: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
    """``image`` (N, C, H, W) resampled onto the current frame: output pixel p takes ``image`` at p + motion (bilinear,
    edges repeated). ``motion`` is on the LR grid (N, 2, h, w); an image ``H / h`` times larger gets it scaled."""
    n, _, height, width = image.shape
    if motion.shape[-2:] != (height, width):
        factor = motion.new_tensor([width / motion.shape[-1], height / motion.shape[-2]]).view(1, 2, 1, 1)
        motion = F.interpolate(motion, size=(height, width), mode="bilinear", align_corners=False) * factor
    ys = torch.arange(height, device=image.device, dtype=torch.float32).view(1, height, 1)
    xs = torch.arange(width, device=image.device, dtype=torch.float32).view(1, 1, width)
    # grid_sample's coordinates with align_corners=False: -1 and 1 are the outer edges of the edge pixels.
    gx = (xs + motion[:, 0] + 0.5) * (2 / width) - 1
    gy = (ys + motion[:, 1] + 0.5) * (2 / height) - 1
    grid = torch.stack([gx, gy], dim=-1)
    out = F.grid_sample(image.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.to(image.dtype)


def scene_cut(lq: torch.Tensor, previous: torch.Tensor, threshold: float) -> torch.Tensor:
    """(N,) bool: whether each stream's frame starts a new shot: its 8x8-block means moved by more than
    ``threshold`` on average (0 disables the test). Block means ignore noise and small motion; a cut changes most
    of them."""
    if threshold <= 0:
        return torch.zeros(lq.shape[0], dtype=torch.bool, device=lq.device)
    k = max(1, min(8, lq.shape[-2], lq.shape[-1]))
    diff = F.avg_pool2d(lq.float(), k, ceil_mode=True) - F.avg_pool2d(previous.float(), k, ceil_mode=True)
    return diff.abs().flatten(1).mean(1) > threshold


def past_input(lq: torch.Tensor, state: RecurrentState | None, scale: int, num_state: int, out_channels: int,
               cut_threshold: float, align_radius: int = 0) -> torch.Tensor:
    """What a recurrent step sees of the past, on the LR grid: this frame, the previous one, the previous output
    (pixel-unshuffled) and the hidden state, the last three warped onto this frame (:func:`block_motion`) when
    ``align_radius`` > 0. A stream with no past (``state`` None, or a scene cut) gets this frame as the previous one
    and zero output and state, as at the start of a video."""
    n, _, h, w = lq.shape
    if state is None:
        zeros_sr = lq.new_zeros((n, out_channels * scale * scale, h, w))
        return torch.cat([lq, lq, zeros_sr, lq.new_zeros((n, num_state, h, w))], dim=1)
    cut = scene_cut(lq, state.lq, cut_threshold)
    if align_radius > 0:  # before the cut test's reset, which then leaves a new shot exactly as a first frame
        motion = block_motion(lq, state.lq, align_radius)
        state = RecurrentState(warp(state.lq, motion), warp(state.sr, motion), warp(state.hidden, motion))
    if bool(cut.any()):  # a host sync, but only a test of N numbers; rare in practice
        keep = (~cut).view(-1, 1, 1, 1).to(lq.dtype)
        state = RecurrentState(torch.where(cut.view(-1, 1, 1, 1), lq, state.lq), state.sr * keep,
                               state.hidden * keep)
    return torch.cat([lq, state.lq, F.pixel_unshuffle(state.sr, scale), state.hidden], dim=1)
