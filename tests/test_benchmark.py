"""The benchmark's V and agent cases on real data and games (tiny sizes) and its regression targets."""

from __future__ import annotations

from run.benchmark import TARGETS, benchmark_agent, missed_targets
from run.benchmark_vae import benchmark_vae


def test_vae_case_times_the_training_step_over_collected_files_beside_the_reference(tmp_path):
    result = benchmark_vae(tmp_path, episodes=3, steps=2, batch_size=8, rounds=1, z_size=8, workers=1)
    assert result["vae_episodes"] == 3 and len(list((tmp_path / "rollouts").glob("ep*.npz"))) == 3
    assert result["vae_frames"] >= 3 * 100, "Doom episodes shorter than 100 frames are redrawn"
    for key in ("vae_files_frames_per_s", "vae_reference_frames_per_s"):
        assert 0 < result[key] < float("inf"), key
    ratio = result["vae_files_frames_per_s"] / result["vae_reference_frames_per_s"]
    assert abs(result["vae_files_vs_reference_ratio"] - ratio) < 1e-9


def test_agent_case_parts_the_models_time_from_the_games_alone_and_in_lockstep():
    result = benchmark_agent(seconds=3.0, lockstep=2)
    assert result["agent_lockstep_episodes"] == 2
    for suffix in ("", "_alone"):
        assert 0 < result[f"agent_model_share{suffix}"] < 1, suffix
        assert 0 < result[f"agent_model_ms_per_step{suffix}"] < 1000, suffix  # under a second a step
        assert result[f"carracing_full_agent_steps_per_s{suffix}"] > 0, suffix
    assert result["carracing_random_actions_steps_per_s"] > 0


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
