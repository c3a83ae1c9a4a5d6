"""`vsr models`: the architectures, their scales and shipped weights, and what a weights file is (``--inspect``)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import click

from vsr.errors import VsrError


@click.command("models")
@click.option("--inspect", "inspect_path", type=click.Path(path_type=Path), default=None, help="Say what a weights file is (ours, a training run, or another project's: architecture, scale, size) and stop.")
@click.option("--json", "as_json", is_flag=True, help="With --inspect: print one JSON object.")
def list_models_cmd(inspect_path, as_json):
    """List the model architectures, their scales, which have shipped weights, and the foreign architectures
    --weights loads (through spandrel)."""
    from vsr import models

    if inspect_path is not None:
        facts = models.inspect_weights(inspect_path)
        click.echo(json.dumps(facts, default=str) if as_json else format_inspect(facts))
        return
    click.echo(f"{'model':<16}{'scales':<12}shipped weights")
    for name in models.list_models():
        shipped = [f"x{s}" for s in models.SCALES if models.find_weights(name, s)]
        scales = " ".join(map(str, models.SCALES))
        click.echo(f"{name:<16}{scales:<12}{' '.join(shipped) or ('none needed' if name == 'bicubic' else '-')}")
    for path in sorted(models.weights_dir().glob("*_x*.pt")) if models.weights_dir().is_dir() else []:
        name, _, scale = path.stem.rpartition("_x")
        if name not in models.list_models():
            click.echo(f"{name:<16}{scale:<12}x{scale} ({path.name})")
    try:
        foreign = models.foreign_architectures()
    except VsrError as exc:
        click.echo(f"\nforeign weights: unavailable ({exc})")
        return
    click.echo(f"\n--weights also loads other projects' files (.pth .pt .ckpt .safetensors) of {len(foreign)} "
               f"architectures, recognised by spandrel:")
    click.echo(textwrap.fill(", ".join(foreign), width=100, initial_indent="  ", subsequent_indent="  "))


def format_inspect(facts: dict) -> str:
    """`vsr models --inspect` as lines of `key: value`."""
    lines = [f"{facts['file']}: {facts['arch']} x{facts['scale']} ({facts['format']}), "
             f"{facts['params'] / 1e6:.2f} M params"]
    if facts["format"] == "spandrel":
        req = facts["size_requirements"]
        lines.append(f"  purpose: {facts['purpose']}; tags: {' '.join(facts['tags']) or '-'}; channels "
                     f"{facts['input_channels']} -> {facts['output_channels']}")
        lines.append(f"  runs in fp16: {'yes' if facts['fp16'] else 'no'}; bf16: {'yes' if facts['bf16'] else 'no'}; "
                     f"input: at least {req['minimum']} px, multiple of {req['multiple_of']}"
                     f"{', square' if req['square'] else ''} (padded automatically)")
    else:
        lines.append(f"  args: {json.dumps(facts['args'])}")
        meta = facts["meta"]
        known = [f"{key} {meta[key]:.2f}" if isinstance(meta.get(key), float) else f"{key} {meta[key]}"
                 for key in ("source", "phase", "trained_steps", "degrade", "val_psnr_y", "init_from", "date")
                 if meta.get(key) is not None]
        if known:
            lines.append(f"  {'; '.join(known)}")
    lines.append(f"  use: vsr enhance INPUT --weights {facts['file']}")
    return "\n".join(lines)
