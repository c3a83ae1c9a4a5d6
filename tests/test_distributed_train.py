"""`vsr train` across processes (CPU, gloo): synchronised BatchNorm against one process on the whole batch; a real
`torchrun --nproc_per_node 2 -m vsr train` whose ranks end with identical weights and BN statistics, rank 0 alone
writing; its checkpoint resumed by one process; the GAN phase (discriminator under DDP too) from it.

Tiny everything: an 8-channel one-block SRResNet, 32-pixel crops, batches of 2, a few steps. Nothing is timed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image
from torch import nn

from vsr import models, train
from vsr.train import distributed
from vsr.train.distributed import Ranks, SyncBatchNorm2d

REPO = Path(__file__).resolve().parents[1]


def write_images(folder: Path, count: int, seed: int) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:48, 0:64]
    for i in range(count):
        img = np.stack([x * 4 + 20 * i, y * 5, (x + y) * 2 + 7 * i], axis=-1) % 256
        Image.fromarray((img + rng.integers(0, 40, img.shape)).clip(0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ddp_data")
    return {"train": write_images(root / "train", 4, 0), "val": write_images(root / "val", 1, 1)}


def torchrun(*args: str) -> subprocess.CompletedProcess:
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}  # 2 processes on 2 cores: one thread each
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "vsr",
            "train", *args]
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def tiny_args(folders, run: Path, *extra: str) -> list[str]:
    # --run-dir: torchrun's own parser would take --run as an abbreviation of its --run-path.
    return ["--data", str(folders["train"]), "--val-dir", str(folders["val"]), "--num-feat", "8", "--num-block", "1",
            "--d-num-feat", "8", "--hr-crop", "32", "-b", "2", "--workers", "0", "--precision", "fp32",
            "--log-every", "1", "--run-dir", str(run), *extra]


def records(run: Path, key: str) -> list[dict]:
    return [r for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if key in r]


# --- SyncBatchNorm2d against BatchNorm2d on the concatenated batch -------------------------------------------------

def _bn_rank(rank: int, init_file: str, inputs: torch.Tensor, weights: torch.Tensor, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    torch.manual_seed(0)
    bn = distributed.sync_batchnorm(nn.Sequential(nn.BatchNorm2d(3)), Ranks(rank, 2))
    assert isinstance(bn[0], SyncBatchNorm2d)
    with torch.no_grad():
        bn[0].weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
        bn[0].bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    outs, grads = [], []
    for step in range(2):  # two steps: the running statistics' momentum update, twice
        x = inputs[step, 3 * rank : 3 * rank + 3].clone().requires_grad_(True)  # rank r: its 3 of the 6 samples
        out = bn(x)
        (out * weights[step, 3 * rank : 3 * rank + 3]).sum().backward()
        outs.append(out.detach())
        grads.append(x.grad)
    torch.save({"out": outs, "x_grad": grads, "w_grad": bn[0].weight.grad, "b_grad": bn[0].bias.grad,
                "state": bn[0].state_dict()}, f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


def test_sync_batchnorm_equals_one_process_on_the_whole_batch(tmp_path):
    gen = torch.Generator().manual_seed(1)
    # The two ranks' halves have different means and scales, so a rank's own statistics differ from the batch's.
    inputs = torch.randn(2, 6, 3, 5, 4, generator=gen) * torch.tensor([1.0, 1, 1, 3, 3, 3]).view(1, 6, 1, 1, 1)
    inputs[:, 3:] += 2.0
    weights = torch.randn(2, 6, 3, 5, 4, generator=gen)
    mp.spawn(_bn_rank, args=(str(tmp_path / "init"), inputs, weights, str(tmp_path)), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]

    reference = nn.BatchNorm2d(3)
    with torch.no_grad():
        reference.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
        reference.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    for step in range(2):
        x = inputs[step].clone().requires_grad_(True)
        out = reference(x)
        (out * weights[step]).sum().backward()
        torch.testing.assert_close(torch.cat([r["out"][step] for r in ranks]), out.detach())
        torch.testing.assert_close(torch.cat([r["x_grad"][step] for r in ranks]), x.grad)
    # Each rank's affine gradients are its share; DDP sums (averages) them, and the sum is the whole batch's.
    torch.testing.assert_close(ranks[0]["w_grad"] + ranks[1]["w_grad"], reference.weight.grad)
    torch.testing.assert_close(ranks[0]["b_grad"] + ranks[1]["b_grad"], reference.bias.grad)
    for r in ranks:  # identical running statistics on both ranks, those of the whole batch
        for name, value in reference.state_dict().items():
            torch.testing.assert_close(r["state"][name], value, msg=name)
    # ... which are not what one rank's own half would have given.
    alone = nn.BatchNorm2d(3)
    for step in range(2):
        alone(inputs[step, :3])
    assert not torch.allclose(alone.running_mean, ranks[0]["state"]["running_mean"], atol=0.05)
    assert not torch.allclose(alone.running_var, ranks[0]["state"]["running_var"], atol=0.05)


def test_sync_batchnorm_keeps_names_tensors_and_folding():
    g = models.build_model("srresnet", scale=2, num_feat=8, num_block=2)
    before = g.state_dict()
    synced = distributed.sync_batchnorm(g, Ranks(0, 2))
    assert sum(isinstance(m, SyncBatchNorm2d) for m in synced.modules()) == 5  # 2 per block + the body's
    after = synced.state_dict()
    assert list(after) == list(before) and all(after[k] is before[k] or after[k].data_ptr() == before[k].data_ptr()
                                               for k in before)
    # Outside a process group (and in eval mode) it is plain BatchNorm, and folding for inference still applies.
    plain = models.build_model("srresnet", scale=2, num_feat=8, num_block=2)
    plain.load_state_dict(after)
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(synced.train()(x), plain.train()(x))
        expected = plain.eval()(x)
        folded = models.fold_batchnorm(synced.eval())
        assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
        torch.testing.assert_close(folded(x), expected)


# --- torchrun: 2 processes through the CLI ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ddp_run(folders, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    run = tmp_path_factory.mktemp("ddp") / "mse"
    done = torchrun(*tiny_args(folders, run, "--steps", "4", "--ckpt-every", "2", "--val-every", "4"))
    assert done.returncode == 0, done.stderr[-3000:]
    return run, done


def test_two_ranks_train_the_same_weights_and_bn_statistics(ddp_run):
    run, done = ddp_run
    assert "on cpu x2" in done.stderr and "batch 2 x 2 ranks = 4" in done.stderr
    assert [r["step"] for r in records(run, "losses")] == [1, 2, 3, 4]  # one writer: rank 0
    # At each checkpoint every rank reported the hash of its G (weights and BN running statistics, which DDP no
    # longer copies from rank 0: they agree because the statistics are synchronised).
    checks = records(run, "weights")
    assert [r["step"] for r in checks] == [2, 4]
    assert all(len(r["weights"]["G"]) == 2 and len(set(r["weights"]["G"])) == 1 for r in checks)
    assert checks[0]["weights"]["G"] != checks[1]["weights"]["G"]
    ckpt = torch.load(run / "ckpt.pt", weights_only=True)
    assert distributed.fingerprint(ckpt["G"]) == checks[-1]["weights"]["G"][0]
    assert ckpt["step"] == 4 and ckpt["data"]["world"] == 2 and len(ckpt["data"]["dataset_rng"]) == 2
    assert ckpt["data"]["dataset_rng"][0] != ckpt["data"]["dataset_rng"][1]  # each rank draws its own crops
    assert not any(k.startswith("module.") for k in ckpt["G"])
    assert int(ckpt["G"]["body.0.bn1.num_batches_tracked"]) == 4
    assert not torch.equal(ckpt["G"]["body.0.bn1.running_var"], torch.ones(8))
    # Rank 0 wrote the run folder alone: no second copy, no temp file left.
    assert sorted(p.name for p in run.iterdir()) == sorted(
        ["ckpt.pt", "config.json", "curves.png", "log.jsonl", "model.pt", "samples"]
        + (["tb"] if (run / "tb").exists() else []))
    assert len(list((run / "samples").iterdir())) == 2  # step 0 and step 4
    net = models.load_model(run / "model.pt", scale=None)  # the exported EMA loads (BN folded) as any weights file
    assert net.meta["trained_steps"] == 4


def test_a_two_process_checkpoint_resumes_in_one_process(ddp_run, folders, tmp_path):
    run, _ = ddp_run
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    for name in ("ckpt.pt", "log.jsonl"):
        (resumed / name).write_bytes((run / name).read_bytes())
    values = train.read_checkpoint_config(resumed)
    values.update(run=str(resumed), resume=True, steps=6)
    result = train.train(train.config_from_dict(values), progress=False)
    assert result["step"] == 6 and not result["interrupted"]
    ckpt = torch.load(resumed / "ckpt.pt", weights_only=True)
    assert ckpt["data"]["world"] == 1 and len(ckpt["data"]["dataset_rng"]) == 1
    # 4 steps x 2 ranks x 2 crops = 16 samples of the pass were seen; one process goes on from there (8 batches).
    assert (ckpt["data"]["epoch"], ckpt["data"]["offset"]) == (0, 8 + 2)
    assert [r["step"] for r in records(resumed, "losses")] == [1, 2, 3, 4, 5, 6]
    assert records(resumed, "weights")[-1]["step"] == 4  # no cross-rank check in one process


def test_gan_phase_under_ddp(ddp_run, folders, tmp_path):
    run, _ = ddp_run
    gan = tmp_path / "gan"
    done = torchrun(*tiny_args(folders, gan, "--phase", "gan", "--init-from", str(run), "--perceptual", "none",
                               "--steps", "2", "--val-every", "2"))
    assert done.returncode == 0, done.stderr[-3000:]
    check = records(gan, "weights")[-1]
    assert check["step"] == 2 and len(set(check["weights"]["G"])) == 1 and len(set(check["weights"]["D"])) == 1
    ckpt = torch.load(gan / "ckpt.pt", weights_only=True)
    assert distributed.fingerprint(ckpt["D"]) == check["weights"]["D"][0]
    assert {"d_real", "d_fake", "adv"} <= set(records(gan, "losses")[-1]["losses"])
