"""benchmarks/mpc_realtime.py: the table of rewards and real-time factors, and one short episode per mode."""

import pytest

from benchmarks import mpc_realtime


def test_the_table_averages_rewards_per_condition_and_gives_the_real_time_spread():
    E = mpc_realtime.Episode
    rows = {"a": [(3, "nominal", E(reward=1.0, realtime_factor=0.5, iterations_per_step=1.0)),
                  (3, "pushes", E(reward=2.0, realtime_factor=1.5, iterations_per_step=3.0)),
                  (4, "nominal", E(reward=3.0, realtime_factor=1.0, iterations_per_step=2.0))]}
    line = mpc_realtime.table(rows).splitlines()[2]
    assert line == "| a | 2.000 | 2.000 | 2.000 | 1.00 (0.50-1.50) | 2.00 |"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_one_episode_runs_against_the_clock(mode):
    pytest.importorskip("mujoco")
    setting = dict(mode=mode, num_samples=4, diffusion_steps=1, keep_best="sample", coarse=2, speed=4.0)
    result = mpc_realtime.episode("hopper", 0, "pushes", setting, horizon=3, push_every=10)
    assert result.rewards.shape == (50,) and result.realtime_factor > 0
    if mode == "async":
        assert result.realtime_factor <= 4.0 * 1.001  # paced at 4x real time at most
    assert setting["mode"] == mode  # the setting is not consumed


def test_the_table_can_be_built_from_a_store_without_running(tmp_path, capsys):
    import json

    name = list(mpc_realtime.SETTINGS)[0]
    store = {"hopper": {name: {f"{s}/{c}": dict(reward=float(s), realtime_factor=0.25, iterations_per_step=1.0)
                               for s in (3, 4) for c in mpc_realtime.CONDITIONS}}}
    path = tmp_path / "store.json"
    path.write_text(json.dumps(store))
    mpc_realtime.main(["--tasks", "hopper", "--settings", "0", "--store", str(path), "--table-only", "--no-write"])
    out = capsys.readouterr().out
    assert f"| {name} | 3.500 | 3.500 | 3.500 | 0.25 (0.25-0.25) | 1.00 |" in out
    assert json.loads(path.read_text()) == store  # --table-only writes nothing


def test_a_temperature_goes_to_every_setting_and_into_its_name():
    settings = {"a": dict(mode="sync", num_samples=4), "b": dict(mode="simulated", plans_per_step=2.0)}
    assert mpc_realtime.with_temperature(settings, None) is settings
    auto = mpc_realtime.with_temperature(settings, "auto")
    assert auto == {"a, temperature auto": dict(mode="sync", num_samples=4, temperature="auto"),
                    "b, temperature auto": dict(mode="simulated", plans_per_step=2.0, temperature="auto")}
    assert "temperature" not in settings["a"]  # the settings given are not changed
    assert mpc_realtime.temperature_arg("0.25") == 0.25 and mpc_realtime.temperature_arg("auto") == "auto"
    for bad in ("0", "-1", "inf", "nan", "warm"):
        with pytest.raises(Exception, match="number > 0 or 'auto'"):
            mpc_realtime.temperature_arg(bad)
