"""benchmarks/mpc_rate.py: the rollout count and the table it prints from the timings."""

import pytest

from benchmarks import mpc_rate


def test_rollouts_per_step_counts_keep_best_s_extra_rollout():
    assert mpc_rate.rollouts_per_step(dict(num_samples=32, diffusion_steps=2)) == 64
    assert mpc_rate.rollouts_per_step(dict(num_samples=24, diffusion_steps=1, keep_best=True)) == 25
    assert mpc_rate.rollouts_per_step(dict(num_samples=24, diffusion_steps=1, keep_best="sample")) == 24


def test_rate_table_gives_medians_rates_and_ratios_to_the_first_setting():
    settings = {"a": dict(num_samples=4, diffusion_steps=2), "b": dict(num_samples=4, diffusion_steps=1, keep_best=True)}
    times = {"a": [0.3, 0.1, 0.2], "b": [0.05, 0.5, 0.1]}  # medians 0.2 and 0.1
    table = mpc_rate.rate_table(times, settings)
    rows = [line.split(" | ") for line in table.splitlines()[2:]]
    assert rows[0] == ["| a", "8", "200.0", "5.00", "1.00x |"]
    assert rows[1] == ["| b", "5", "100.0", "10.00", "2.00x |"]


@pytest.mark.slow
def test_the_settings_run_on_a_small_task(capsys):
    pytest.importorskip("mujoco")
    settings = {"x2": dict(num_samples=4, diffusion_steps=2), "x1": dict(num_samples=4, diffusion_steps=1, keep_best=True)}
    times = mpc_rate.time_settings("push_t", horizon=4, repeats=2, settings=settings)
    assert set(times) == {"x2", "x1"} and all(len(v) == 2 and min(v) > 0 for v in times.values())


@pytest.mark.slow
def test_a_coarse_setting_plans_on_its_own_cheaper_model():
    pytest.importorskip("mujoco")
    settings = {"fine": dict(num_samples=4, diffusion_steps=1), "coarse": dict(num_samples=4, diffusion_steps=1, coarse=2, nthread=1)}
    times = mpc_rate.time_settings("hopper", horizon=3, repeats=2, settings=settings)
    assert set(times) == {"fine", "coarse"} and all(len(v) == 2 and min(v) > 0 for v in times.values())
    assert settings["coarse"]["coarse"] == 2  # the settings given are not consumed


def test_rate_table_adds_the_ratio_to_the_baseline_setting():
    settings = {"a": dict(num_samples=4, diffusion_steps=2), "b": dict(num_samples=4, diffusion_steps=1)}
    times = {"a": [0.4], "b": [0.1]}
    rows = [line.split(" | ") for line in mpc_rate.rate_table(times, settings, baseline=("b", "b!")).splitlines()]
    assert rows[0][-1] == "rate vs b! |"
    assert rows[2][-2:] == ["1.00x", "0.25x |"] and rows[3][-2:] == ["4.00x", "1.00x |"]
    with pytest.raises(ValueError, match="baseline 'c'"):
        mpc_rate.rate_table(times, settings, baseline=("c", "c"))


def test_the_baseline_is_one_of_the_settings():
    assert mpc_rate.BASELINE[0] in mpc_rate.SETTINGS
    assert mpc_rate.SETTINGS[mpc_rate.BASELINE[0]] == dict(num_samples=30, diffusion_steps=1, keep_best="sample")
