"""`vsr.bench`: model-only and the conv bar bracket the end-to-end run; the preset reaches every encode."""

from vsr import bench


def test_model_only_is_timed_before_and_after_end_to_end():
    result = bench.run_bench("espcn", scale=2, width=32, height=24, frames=6, device="cpu", batch_size=4, naive=False)
    before, after = result["model_fps_before"], result["model_fps_after"]
    assert before > 0 and after > 0
    # The ratio's model figure is frames / mean seconds of the two passes: between them, and their harmonic mean.
    assert min(before, after) - 0.01 <= result["model_fps"] <= max(before, after) + 0.01
    assert abs(result["model_fps"] - 2 / (1 / before + 1 / after)) < 0.01
    assert abs(result["e2e_over_model"] - result["end_to_end_fps"] / result["model_fps"]) < 0.01
    # The bar is bracketed the same way.
    conv = 2 / (1 / result["conv_tflops_before"] + 1 / result["conv_tflops_after"])
    assert abs(result["conv_tflops"] - conv) <= 0.002 + 0.01 * conv
    assert result["frames"] == 6  # a short last batch (6 = 4 + 2) is timed too



def test_naive_loop_encodes_with_the_preset_asked(tmp_path):
    import torch

    from vsr import models, pipeline
    from vsr.precision import Precision

    clip = tmp_path / "clip.mp4"
    bench.write_clip(clip, bench.synthetic_frames(3, 32, 24))
    upscaler = pipeline.Upscaler(models.build_model("espcn", scale=2).eval(), torch.device("cpu"), Precision("fp32", ""))
    for preset, subme in (("veryfast", b"subme=2 "), ("medium", b"subme=7 ")):
        out = tmp_path / f"{preset}.mp4"
        assert bench.naive_loop_fps(clip, out, upscaler, 2, "libx264", preset) > 0
        assert subme in out.read_bytes()  # x264 writes its settings into the stream (an SEI message)


def test_bench_runs_what_enhance_chooses_and_scales_the_clip_to_the_size():
    assert bench.default_frames(160, 120) == 256 and bench.default_frames(720, 576) == 12
    assert bench.default_frames(1920, 1080) == bench.MIN_FRAMES
    result = bench.run_bench("espcn", scale=2, width=40, height=30, frames=3, device="cpu", naive=False)
    # 40x30 frames are small: enhance batches them, and says so; the bench runs the same.
    assert result["batch_size"] > 1 and result["tile"] == 0 and "frames of 40x30 a call" in result["work"]


def test_sizes_sweep_prints_one_row_per_size_each_with_its_own_rss():
    from click.testing import CliRunner

    from vsr.cli import cli

    args = ["bench", "-m", "espcn", "-s", "2", "--sizes", "32x24,48x40", "--frames", "2", "--no-naive",
            "--device", "cpu", "--threads", "1", "--preset", "ultrafast"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines() if line.startswith("espcn ") and " at " not in line]
    assert [row[2] for row in rows] == ["32x24", "48x40"]
    assert all(float(row[-1]) > 0 for row in rows)  # RSS MB of each size's own process
