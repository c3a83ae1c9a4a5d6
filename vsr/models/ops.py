"""Whole-model operations for inference and reporting: BatchNorm folding and FLOP counting."""

import copy

import torch
from torch import nn


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Folds each BatchNorm2d that directly follows a Conv2d into that conv, and replaces the BN by Identity.

    "Directly follows" means: the BN is the next child registered after the conv in the same parent, with
    ``num_features == conv.out_channels`` (true in Sequentials, and this file's models register in data-flow
    order). In eval mode the output is unchanged (to float rounding, ~1e-6): ``y = gamma * (conv(x) - mean) /
    sqrt(var + eps) + beta`` is itself a conv. BNs without running statistics are left alone. In place.

    Returns:
        ``model``, with ``model.bn_folded = True``.
    """
    for parent in list(model.modules()):
        children = list(parent.named_children())
        for (_, conv), (bn_name, bn) in zip(children, children[1:]):
            if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
                continue
            if bn.running_mean is None or bn.num_features != conv.out_channels:
                continue
            # Float64 so that folding adds no error of its own.
            inv_std = torch.rsqrt(bn.running_var.double() + bn.eps)
            gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(inv_std)
            beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(inv_std)
            bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(inv_std)
            factor = gamma * inv_std
            w = conv.weight
            conv.weight.copy_((w.double() * factor.view(-1, 1, 1, 1)).to(w.dtype))
            new_bias = ((bias - bn.running_mean.double()) * factor + beta).to(w.dtype)
            if conv.bias is None:
                conv.bias = nn.Parameter(new_bias, requires_grad=w.requires_grad)
            else:
                conv.bias.copy_(new_bias)
            setattr(parent, bn_name, nn.Identity())
    model.bn_folded = True
    return model


def count_flops(model: nn.Module, h: int, w: int) -> int:
    """FLOPs of one forward pass on a (1, 3, h, w) input: 2 x multiply-accumulates of conv, transposed-conv and
    linear layers (activations, BN, interpolation and bias adds are not counted).

    Runs on a copy of the model on the "meta" device (shapes only, no compute), falling back to a real forward pass
    if some op has no meta kernel.
    """
    counts: list[int] = []

    def hook(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        if isinstance(m, nn.Conv2d):
            counts.append(out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1])
        elif isinstance(m, nn.ConvTranspose2d):
            counts.append(inputs[0].numel() * (m.out_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1])
        elif isinstance(m, nn.Linear):
            counts.append(out.numel() * m.in_features)

    def run(net: nn.Module, device: torch.device, dtype: torch.dtype) -> int:
        counts.clear()
        handles = [m.register_forward_hook(hook) for m in net.modules()
                   if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
        try:
            with torch.no_grad():
                net(torch.zeros(1, 3, h, w, device=device, dtype=dtype))
        finally:
            for handle in handles:
                handle.remove()
        return 2 * sum(counts)

    tensor = next(iter(list(model.parameters()) + list(model.buffers())), None)
    dtype = tensor.dtype if tensor is not None else torch.float32
    try:
        return run(copy.deepcopy(model).eval().to("meta"), torch.device("meta"), dtype)
    except (NotImplementedError, RuntimeError):
        was_training = model.training
        model.eval()  # no BN running-stat updates from this probe
        try:
            return run(model, tensor.device if tensor is not None else torch.device("cpu"), dtype)
        finally:
            model.train(was_training)
