"""`vsr.bench.run_bench`: every figure comes from the same frames, and model-only brackets the end-to-end run."""

from vsr import bench


def test_model_only_is_timed_before_and_after_end_to_end():
    result = bench.run_bench("espcn", scale=2, width=32, height=24, frames=6, device="cpu", batch_size=4, naive=False)
    before, after = result["model_fps_before"], result["model_fps_after"]
    assert before > 0 and after > 0
    # The ratio's model figure is frames / mean seconds of the two passes: between them, and their harmonic mean.
    assert min(before, after) - 0.01 <= result["model_fps"] <= max(before, after) + 0.01
    assert abs(result["model_fps"] - 2 / (1 / before + 1 / after)) < 0.01
    assert abs(result["e2e_over_model"] - result["end_to_end_fps"] / result["model_fps"]) < 0.01
    assert result["frames"] == 6  # a short last batch (6 = 4 + 2) is timed too

