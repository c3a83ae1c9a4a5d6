"""The trainer on tiny real runs: an 8-channel one-block SRResNet, 32-pixel crops, batches of 2, a handful of steps,
on a folder of small PNGs made here. Nothing is timed; every run finishes in seconds on two CPU cores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from vsr import models, train
from vsr.cli_train import train_cmd
from vsr.errors import VsrError
from vsr.train import TrainConfig

REPO = Path(__file__).resolve().parent.parent


def _write_images(folder: Path, count: int, size=(64, 48), seed=0) -> Path:
    """Gradients with noise and a box: structure to learn, different in every image."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    for i in range(count):
        img = np.stack([x * 4 + 20 * i, y * 5, (x + y) * 2 + 7 * i], axis=-1) % 256
        img[h // 4 : h // 2, w // 3 : w // 2] = (30 * i, 200, 90)
        img = (img + rng.integers(0, 30, img.shape)).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"img{i}.png")
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train_data")
    return {"train": _write_images(root / "train", 4), "val": _write_images(root / "val", 2, seed=1)}


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory) -> Path:
    """A randomly initialised torchvision VGG19 (its `features`, as vgg19().state_dict() names them), saved to disk:
    the perceptual loss then goes through the real file-loading path."""
    import torchvision

    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["E"])
    path = tmp_path_factory.mktemp("vgg") / "vgg19-random.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    return path


def tiny(folders, run: Path, **overrides) -> TrainConfig:
    base = dict(
        data=[str(folders["train"])], num_feat=8, num_block=1, d_num_feat=8, hr_crop=32, batch_size=2, steps=6,
        workers=0, val_dir=str(folders["val"]), val_every=3, ckpt_every=3, log_every=2, precision="fp32", run=str(run),
    )
    base.update(overrides)
    return TrainConfig(**base)


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_mse_run_writes_checkpoint_config_log_samples_and_curves(folders, tmp_path):
    run = tmp_path / "run"
    result = train.train(tiny(folders, run), progress=False)
    assert result["step"] == 6 and not result["interrupted"]
    for name in ("ckpt.pt", "config.json", "log.jsonl", "curves.png"):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["phase"] == "mse" and config["mse_weight"] == 1.0 and config["perceptual"] == "none"
    assert config["num_feat"] == 8 and config["steps"] == 6
    log = read_log(run)
    assert [r["step"] for r in log if "losses" in r] == [2, 4, 6]
    assert [r["step"] for r in log if "val" in r] == [0, 3, 6]
    record = next(r for r in log if "losses" in r)
    assert set(record) == {"step", "lr", "losses", "it_s"} and record["lr"] == 1e-4 and record["losses"]["pix"] > 0
    assert sorted(p.name for p in (run / "samples").iterdir()) == [
        "step_000000.png", "step_000003.png", "step_000006.png"
    ]
    with Image.open(run / "samples" / "step_000006.png") as grid, Image.open(run / "curves.png") as curves:
        assert grid.width > 4 * 32 and curves.width > 100
    ckpt = torch.load(run / "ckpt.pt", weights_only=True)
    assert ckpt["step"] == 6 and ckpt["model_args"] == {
        "arch": "srresnet", "args": {"scale": 4, "num_feat": 8, "num_block": 1}
    }
    for key in ("G", "opt_g", "scaler", "ema", "rng", "config", "data"):
        assert key in ckpt
    assert all(v.dtype == torch.float32 for v in ckpt["ema"]["module"].values() if v.is_floating_point())


def test_resume_continues_the_log_and_ends_bitwise_where_an_uninterrupted_run_does(folders, tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    train.train(tiny(folders, whole, steps=8, val_every=100, ckpt_every=100), progress=False)
    train.train(tiny(folders, split, steps=5, val_every=100, ckpt_every=100), progress=False)
    result = train.train(tiny(folders, split, steps=8, val_every=100, ckpt_every=100, resume=True), progress=False)
    assert result["step"] == 8
    steps = [r["step"] for r in read_log(split) if "losses" in r]
    assert steps == [2, 4, 5, 6, 8]  # the first invocation logs its last step, then numbering continues
    a = torch.load(whole / "ckpt.pt", weights_only=True)
    b = torch.load(split / "ckpt.pt", weights_only=True)
    for part in ("G",):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part])
    assert all(torch.equal(a["ema"]["module"][k], b["ema"]["module"][k]) for k in a["ema"]["module"])
    assert a["ema"]["updates"] == b["ema"]["updates"] == 8
    assert a["data"] == b["data"]


def test_batch_position_survives_a_resume_across_passes():
    dataset = torch.utils.data.TensorDataset(torch.arange(6))
    from vsr import data

    def loader():
        return data.make_loader(dataset, batch_size=2, workers=0, seed=3)

    whole = train.Batches(loader(), seed=3)
    expected = [next(whole)[0].tolist() for _ in range(8)]
    first = train.Batches(loader(), seed=3)
    got = [next(first)[0].tolist() for _ in range(4)]  # one pass is 3 batches: stop inside the second
    resumed = train.Batches(loader(), seed=3, epoch=first.epoch, offset=first.offset)
    got += [next(resumed)[0].tolist() for _ in range(4)]
    assert got == expected
    assert expected[:3] != expected[3:6]  # each pass has its own order


def test_resume_needs_a_checkpoint_and_a_fresh_run_refuses_to_overwrite_one(folders, tmp_path):
    with pytest.raises(VsrError, match="no checkpoint"):
        train.train(tiny(folders, tmp_path / "none", resume=True), progress=False)
    run = tmp_path / "run"
    train.train(tiny(folders, run, steps=2, val_every=100), progress=False)
    with pytest.raises(VsrError, match="already holds a checkpoint"):
        train.train(tiny(folders, run, steps=2), progress=False)


def test_gan_phase_from_the_mse_checkpoint_with_vgg_and_without(folders, tmp_path, vgg_file):
    mse = tmp_path / "mse"
    train.train(tiny(folders, mse, steps=2, val_every=100), progress=False)
    init = str(mse / "ckpt.pt")
    vgg_run, plain_run = tmp_path / "gan_vgg", tmp_path / "gan_plain"
    train.train(tiny(folders, vgg_run, phase="gan", init_from=init, perceptual_weights=str(vgg_file),
                     vgg_layer="relu1_2", num_feat=None, num_block=None, steps=2, val_every=100), progress=False)
    train.train(tiny(folders, plain_run, phase="gan", init_from=init, perceptual="none", steps=2, val_every=100),
                progress=False)
    losses = [r["losses"] for r in read_log(vgg_run) if "losses" in r][-1]
    assert set(losses) == {"pix", "percep", "adv", "g_total", "d_real", "d_fake"}
    assert all(np.isfinite(v) for v in losses.values())
    config = json.loads((vgg_run / "config.json").read_text())
    assert config["mse_weight"] == 0.0 and config["lr_decay_at"] == 0.5 and config["num_feat"] == 8
    plain = json.loads((plain_run / "config.json").read_text())
    assert plain["perceptual"] == "none" and plain["mse_weight"] == 1.0
    assert "percep" not in [r["losses"] for r in read_log(plain_run) if "losses" in r][-1]
    ckpt = torch.load(vgg_run / "ckpt.pt", weights_only=True)
    assert ckpt["D"] and ckpt["opt_d"] and ckpt["d_args"] == {"num_feat": 8}


def test_init_from_another_scale_copies_the_trunk_and_starts_the_upsampler_fresh(folders, tmp_path):
    x4 = tmp_path / "x4"
    train.train(tiny(folders, x4, steps=2, val_every=100), progress=False)
    x4_ckpt = torch.load(x4 / "ckpt.pt", weights_only=True)
    source = x4_ckpt["ema"]["module"]  # --init-from a checkpoint starts from its EMA weights
    x2 = tmp_path / "x2"
    train.train(tiny(folders, x2, scale=2, init_from=str(x4 / "ckpt.pt"), steps=1, val_every=100, lr=0.0),
                progress=False)
    ckpt = torch.load(x2 / "ckpt.pt", weights_only=True)
    assert ckpt["model_args"]["args"]["scale"] == 2
    g = ckpt["G"]
    # lr 0: what was copied is still the x4 model's; the x4-only second upsampling stage does not exist at x2.
    assert torch.equal(g["body.0.conv1.weight"], source["body.0.conv1.weight"])
    assert torch.equal(g["conv_first.weight"], source["conv_first.weight"])
    assert "upsample.3.weight" in source and "upsample.3.weight" not in g


def test_gan_without_vgg_weights_stops_at_once_with_one_line(folders, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    run = tmp_path / "run"
    with pytest.raises(VsrError, match="VGG19"):
        train.train(tiny(folders, run, phase="gan"), progress=False)
    assert not run.exists()
    result = CliRunner().invoke(train_cmd, ["--phase", "gan", "--data", str(folders["train"]), "--run", str(run)])
    assert result.exit_code == 1
    assert result.output.startswith("Error: VGG19") and result.output.count("\n") == 1


def test_export_at_the_end_and_from_a_checkpoint_loads_with_load_model(folders, tmp_path):
    run, out = tmp_path / "run", tmp_path / "weights" / "mine_x4.pt"
    result = train.train(tiny(folders, run, steps=3, export=str(out)), progress=False)
    assert result["export"] == str(out)
    model = models.load_model(out, scale=4)
    assert model.arch == "srresnet" and model.args["num_feat"] == 8
    assert model.meta["trained_steps"] == 3 and model.meta["phase"] == "mse" and model.meta["precision"] == "fp32"
    assert model.meta["val_psnr_y"] == pytest.approx(result["val"]["psnr_y"])
    again = tmp_path / "again.pt"
    cli = CliRunner().invoke(train_cmd, ["--export-from", str(run / "ckpt.pt"), "--export", str(again)])
    assert cli.exit_code == 0, cli.output
    assert models.load_model(again, scale=4).meta["trained_steps"] == 3


def test_bf16_training_steps_run_on_cpu_with_fp32_master_weights(folders, tmp_path):
    run = tmp_path / "run"
    train.train(tiny(folders, run, precision="bf16", steps=2, val_every=100), progress=False)
    ckpt = torch.load(run / "ckpt.pt", weights_only=True)
    assert ckpt["precision"] == "bf16"
    assert all(np.isfinite(v) for v in read_log(run)[-2]["losses"].values())
    for part in (ckpt["G"], ckpt["ema"]["module"]):
        assert all(v.dtype == torch.float32 for v in part.values() if v.is_floating_point())


def test_realistic_degradation_trains_and_saves_an_example_grid(folders, tmp_path):
    run = tmp_path / "run"
    train.train(tiny(folders, run, degrade="realistic", degrade_args={"crf": [30, 35]}, steps=1, val_every=100),
                progress=False)
    with Image.open(run / "degradation_example.png") as grid:
        assert grid.width > 3 * 32
    assert json.loads((run / "config.json").read_text())["degrade_args"] == {"crf": [30, 35]}
    with pytest.raises(VsrError, match="bad degradation option"):
        train.train(tiny(folders, tmp_path / "bad", degrade="realistic", degrade_args={"crff": [1, 2]}),
                    progress=False)


def test_cpu_supports_bf16_matches_the_precision_module():
    from vsr.precision import cpu_bf16_capability

    assert train.cpu_supports_bf16() == (cpu_bf16_capability() is not None)


def test_lr_schedule_and_phase_defaults():
    gan = train.resolve_config(TrainConfig(phase="gan", data=["x"], steps=100))
    assert [train.lr_at(s, gan) for s in (0, 49, 50, 99)] == [1e-4, 1e-4, 1e-4 * 0.1, 1e-4 * 0.1]
    mse = train.resolve_config(TrainConfig(data=["x"], steps=100))
    assert {train.lr_at(s, mse) for s in range(100)} == {1e-4}
    assert train.resolve_config(TrainConfig(phase="gan", data=["x"], perceptual="none")).mse_weight == 1.0
    assert train.resolve_config(TrainConfig(phase="gan", data=["x"], mse_weight=0.5)).mse_weight == 0.5
    with pytest.raises(VsrError, match="multiple of the scale"):
        train.resolve_config(TrainConfig(data=["x"], hr_crop=30))
    with pytest.raises(VsrError, match="no training data"):
        train.resolve_config(TrainConfig())


def test_validation_is_the_data_s_own_holdout_or_none(folders, tmp_path):
    """No benchmark is used unless asked (--val): an installed vsr has no ../shared beside it."""
    sources, val = train.split_validation(TrainConfig(data=[str(folders["train"])]))
    assert val is None and sources == [str(folders["train"])]
    prepared = tmp_path / "prepared"
    _write_images(prepared / "train", 2)
    _write_images(prepared / "holdout", 1)
    assert train.split_validation(TrainConfig(data=[str(prepared)]))[1] == prepared / "holdout"
    # `vsr prepare clips frames` then `vsr train --data frames/train`: the holdout beside it is found.
    assert train.split_validation(TrainConfig(data=[str(prepared / "train")]))[1] == prepared / "holdout"
    assert train.split_validation(TrainConfig(data=[str(prepared)], val_dir=str(folders["val"])))[1] == folders["val"]


def test_cli_config_file_with_flags_overriding_it(folders, tmp_path):
    run = tmp_path / "run"
    config = tmp_path / "run.toml"
    config.write_text(
        f'data = ["{folders["train"]}"]\nnum-feat = 8\nnum_block = 1\nhr_crop = 32\nbatch_size = 2\nsteps = 5\n'
        f'workers = 0\nval_dir = "{folders["val"]}"\nval_every = 100\nprecision = "fp32"\nlr = 0.001\n'
        f"[degrade_args]\ncrf = [20, 30]\n"
    )
    flags = ["--mpeg2-prob", "1", "--mpeg2-bpp", "0.3,0.5", "--interlace-prob", "0.5"]  # merged into degrade_args
    result = CliRunner().invoke(train_cmd, ["--config", str(config), "--steps", "2", "--run", str(run), *flags])
    assert result.exit_code == 0, result.output
    saved = json.loads((run / "config.json").read_text())
    assert saved["steps"] == 2 and saved["lr"] == 0.001 and saved["num_feat"] == 8
    assert saved["degrade_args"] == {"crf": [20, 30], "mpeg2_prob": 1.0, "mpeg2_bpp": [0.3, 0.5], "interlace_prob": 0.5}
    # --resume starts from the run's own config: only the flags given change.
    threads = torch.get_num_threads()
    try:
        result = CliRunner().invoke(train_cmd, ["--run", str(run), "--resume", "--steps", "3", "--threads", "1"])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    saved = json.loads((run / "config.json").read_text())
    assert saved["lr"] == 0.001 and "threads" not in saved  # the machine's, not the run's
    assert [r["step"] for r in read_log(run) if "losses" in r] == [2, 3]
    bad = tmp_path / "bad.toml"
    bad.write_text("stepz = 3\n")
    result = CliRunner().invoke(train_cmd, ["--config", str(bad)])
    assert result.exit_code == 1 and "unknown training option(s): stepz" in result.output


def _cli_args(folders, run: Path, *extra: str) -> list[str]:
    return [
        "train", "--data", str(folders["train"]), "--num-feat", "8", "--num-block", "1", "--hr-crop", "32", "-b", "2",
        "--workers", "0", "--val-dir", str(folders["val"]), "--precision", "fp32", "--log-every", "1", *extra,
    ]


@pytest.mark.parametrize(
    "sig, workers, whole_group",
    [(signal.SIGINT, 0, False), (signal.SIGTERM, 0, False), (signal.SIGTERM, 1, True), (signal.SIGINT, 1, True)],
    ids=["ctrl_c", "sigterm", "sigterm_to_the_group_with_a_loader_worker", "ctrl_c_in_a_terminal_with_a_worker"],
)
def test_ctrl_c_or_sigterm_saves_a_checkpoint_and_exits_with_one_line(folders, tmp_path, sig, workers, whole_group):
    run = tmp_path / "run"
    args = _cli_args(folders, run, "--run", str(run), "--steps", "100000", "--val-every", "100000")
    args[args.index("--workers") + 1] = str(workers)
    # whole_group: the signal reaches the loader workers too, as from a terminal's Ctrl-C, `kill -- -PGID`, Slurm.
    proc = subprocess.Popen([sys.executable, "-m", "vsr", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=whole_group)
    try:
        log = run / "log.jsonl"
        for _ in range(600):  # wait (at most a minute) until training steps are being logged
            if log.exists() and len(log.read_text().splitlines()) >= 3:
                break
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        if whole_group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)  # SIGTERM: a Slurm preemption, or torchrun stopping its workers
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    lines = [line for line in err.splitlines() if "interrupted" in line]
    assert len(lines) == 1 and "checkpoint saved" in lines[0] and "Traceback" not in err
    step = torch.load(run / "ckpt.pt", weights_only=True)["step"]
    assert step >= 1 and read_log(run)[-1]["step"] == step
    # The weights learnt so far are exported, ready for `vsr enhance --weights`.
    assert models.load_model(run / "model.pt", scale=None).meta["trained_steps"] == step
    assert f"--weights {run / 'model.pt'}" in err


def test_a_run_without_validation_images_trains_and_exports(folders, tmp_path):
    run = tmp_path / "run"
    result = train.train(tiny(folders, run, val_dir=None, steps=2), progress=False)
    assert result["step"] == 2 and result["val"] is None
    assert models.load_model(run / "model.pt", scale=None).meta["trained_steps"] == 2
