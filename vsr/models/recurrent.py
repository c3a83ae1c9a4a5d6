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

    def past(self, lq: torch.Tensor, state: RecurrentState | None) -> torch.Tensor:
        """The input of ``conv_temporal`` for frame ``lq``: the past of each stream, or none where a stream starts
        (``state`` None) or its frame starts a new shot (see :func:`scene_cut`)."""
        return past_input(lq, state, self.scale, self.num_state, self.conv_last.out_channels, self.cut_threshold)

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
               cut_threshold: float) -> torch.Tensor:
    """What a recurrent step sees of the past, on the LR grid: this frame, the previous one, the previous output
    (pixel-unshuffled) and the hidden state. A stream with no past (``state`` None, or a scene cut) gets this frame
    as the previous one and zero output and state, as at the start of a video."""
    n, _, h, w = lq.shape
    if state is None:
        zeros_sr = lq.new_zeros((n, out_channels * scale * scale, h, w))
        return torch.cat([lq, lq, zeros_sr, lq.new_zeros((n, num_state, h, w))], dim=1)
    cut = scene_cut(lq, state.lq, cut_threshold)
    if bool(cut.any()):  # a host sync, but only a test of N numbers; rare in practice
        keep = (~cut).view(-1, 1, 1, 1).to(lq.dtype)
        state = RecurrentState(torch.where(cut.view(-1, 1, 1, 1), lq, state.lq), state.sr * keep,
                               state.hidden * keep)
    return torch.cat([lq, state.lq, F.pixel_unshuffle(state.sr, scale), state.hidden], dim=1)
