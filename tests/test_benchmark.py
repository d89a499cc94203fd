"""The benchmark's V case on real collected episodes (tiny sizes) and its regression targets."""

from __future__ import annotations

from run.benchmark import TARGETS, missed_targets
from run.benchmark_vae import benchmark_vae


def test_vae_case_times_the_training_step_over_collected_files_beside_the_reference(tmp_path):
    result = benchmark_vae(tmp_path, episodes=3, steps=2, batch_size=8, rounds=1, z_size=8, workers=1)
    assert result["vae_episodes"] == 3 and len(list((tmp_path / "rollouts").glob("ep*.npz"))) == 3
    assert result["vae_frames"] >= 3 * 100, "Doom episodes shorter than 100 frames are redrawn"
    for key in ("vae_files_frames_per_s", "vae_reference_frames_per_s"):
        assert 0 < result[key] < float("inf"), key
    ratio = result["vae_files_frames_per_s"] / result["vae_reference_frames_per_s"]
    assert abs(result["vae_files_vs_reference_ratio"] - ratio) < 1e-9


def test_missed_targets_names_each_missed_ratio_and_ignores_cases_not_run():
    passing = {"vae": {"vae_files_vs_reference_ratio": 0.95}, "agent": {"agent_model_share": 0.2},
               "dream": {"dream_vs_real_ratio": 120.0}}
    assert missed_targets(passing) == []
    failing = {"vae": {"vae_files_vs_reference_ratio": 0.5}, "agent": {"agent_model_share": 0.3}}
    missed = missed_targets(failing)
    assert len(missed) == 2
    assert missed[0].startswith("vae: vae_files_vs_reference_ratio = 0.500, target >= 0.9")
    assert missed[1].startswith("agent: agent_model_share = 0.300, target < 0.25")
    assert {key for _, key, _, _ in TARGETS} >= {"vae_files_vs_reference_ratio", "rnn_doom_vs_reference_ratio",
                                                 "dream_vs_real_ratio", "agent_model_share"}
