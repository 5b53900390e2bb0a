"""Humanoid jogging (paper, section 5.2): MBD with and without the partial-state mocap demonstration.

Both arms plan the ``humanoid_jog`` task (the authors' humanoid, 5 x 0.006 s per control step,
their jogging reward ``1 - |vx - 1.6| - |z - 1.3| - 0.1 |y|``, see ``dynamics.humanoid_jog``) from the same initial state with the same budget (``--samples`` rollouts per step,
``--steps`` diffusion steps), the same temperature and the same sampling seeds; the demo arm
adds ``model.demonstration(--clip)``: torso, thigh and shin positions of a human jog
(the authors' ``jog_xref`` clip, ``--clip mocap``: ``$TORCH_MBD_DATA/mocap/jog_xref.npz``, the user cache
or a one-time download, see ``dynamics.data``) mapped onto the robot, weighted by the max rule of
Eq. (13). Metrics of the final plan's rollout (per seed):

* task reward: mean step reward (the task's);
* distance: mean Euclidean distance of the 5 tracked points to the reference, over the horizon;
* torso height variance over the horizon (``torso_pos`` z, m^2);
* upright: fraction of the horizon with the root height in gymnasium's healthy range [1, 2] m.

Run (defaults: about 3 minutes on a quiet 2-core CPU; the paper uses n = 300, 100 steps)::

    python -m benchmarks.humanoid_jog
    python -m benchmarks.humanoid_jog --seeds 2 --samples 16 --steps 5 --no-write   # quick look
    python -m benchmarks.humanoid_jog --axes z --no-write           # the demo covers heights only
    python -m benchmarks.humanoid_jog --first-seed 5 --no-write     # held-out seeds 5-9
    python -m benchmarks.humanoid_jog --frame-skip 7 --no-write     # a 0.042 s control step
    python -m benchmarks.humanoid_jog --seeds 1 --weights           # how sharp the demo arm's weights are
    python -m benchmarks.humanoid_jog --likelihood authors --no-write  # the authors' demo likelihood

Writes the section ``humanoid_jog`` of docs/results.md and docs/figures/humanoid_jog.png.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._report import figure_path, machine, markdown_table, write_section  # noqa: E402
from dynamics.humanoid_jog import (  # noqa: E402
    AUTHORS_DEMO_CLIP,
    AUTHORS_DEMO_REWARD,
    DEFAULT_CLIP,
    DEFAULT_DEMO_SIGMA,
    DEFAULT_HEIGHT_SIGMA,
    LIKELIHOODS,
    HumanoidJog,
    reference_distance,
    upright_fraction,
)
from torch_mbd import MBDOptimizer, plan  # noqa: E402
from torch_mbd.progress import progress_bar  # noqa: E402

ARMS = ("no demo", "demo")
METRICS = ("reward", "distance", "height_var", "upright")


def evaluate(model: HumanoidJog, states: torch.Tensor, rewards: torch.Tensor, reference: torch.Tensor) -> dict:
    """The metrics of one plan's rollout ``states [H, nx]``, ``rewards [H]``."""
    states = states.double()
    qpos = states[..., model.state_slices["qpos"]]
    sens = states[..., model.state_slices["sensordata"]]
    torso_z = sens[..., model.sensor_slices["torso_pos"]][..., 2]
    return dict(
        reward=float(rewards.double().mean()),
        distance=float(reference_distance(model.tracked_points(states), reference)),
        height_var=float(torso_z.var(unbiased=False)),
        upright=float(upright_fraction(qpos)),
        torso_z=torso_z.cpu(),
        torso_x=sens[..., model.sensor_slices["torso_pos"]][..., 0].cpu(),
    )


def demo_options(model: HumanoidJog, args) -> dict:
    """The demo arm's optimizer options from the command line."""
    demo = model.demonstration(
        args.clip,
        demo_sigma=args.demo_sigma,
        height_sigma=args.height_sigma,
        demo_units=args.demo_units,
        axes=args.axes,
        likelihood=args.likelihood,
    )
    if args.demo_reward == "first-best":  # the optimizer takes the first step's best sample reward
        demo.pop("demo_reward")
    elif args.demo_reward == "reference":
        if args.likelihood != "gaussian":  # the authors' default is their fixed reward: ask for ours
            demo["demo_reward"] = model.reference_reward(model.reference(args.clip))
    else:
        demo["demo_reward"] = float(args.demo_reward)
    return demo


def run(args) -> tuple[dict, torch.Tensor, HumanoidJog]:
    """``{arm: [metrics per seed]}``, the reference ``[H, 5, 3]`` and the model."""
    model = HumanoidJog(horizon=args.horizon, frame_skip=args.frame_skip)
    demo = demo_options(model, args)
    reference = model.reference(args.clip)
    results = {arm: [] for arm in ARMS}
    with progress_bar(len(args.arms) * args.seeds, "humanoid_jog runs", not args.quiet) as bar:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for arm in args.arms:
                options = demo if arm == "demo" else {}
                res = plan(
                    model,
                    num_samples=args.samples,
                    num_steps=args.steps,
                    temperature=args.temperature,
                    seed=seed,
                    progress=False,
                    preset="paper",  # the paper's algorithm, as section 5.2
                    **options,
                )
                metrics = evaluate(model, res.states, res.rewards, reference)
                metrics["time"] = res.time
                results[arm].append(metrics)
                print(
                    f"  seed {seed} {arm:8s} reward {metrics['reward']:+.3f} distance {metrics['distance']:.3f} m "
                    f"height var {metrics['height_var']:.4f} upright {metrics['upright']:.2f} ({res.time:.0f} s)",
                    file=sys.stderr,
                )
                bar.update()
    return results, reference, model


def weight_trace(model: HumanoidJog, demo: dict, args, seed: int) -> list[tuple[float, float]]:
    """Per diffusion step of the demo arm: the fraction of samples the demonstration won and the
    effective sample size ``1 / sum w^2`` of the weights (the optimizer ``plan`` builds, step by step)."""
    lower, upper = (torch.as_tensor(b, device=model.device) for b in model.action_bounds)
    actions = torch.zeros(model.horizon, model.action_dim, dtype=lower.dtype, device=model.device)
    opt = MBDOptimizer(
        [actions],
        num_samples=args.samples,
        temperature=args.temperature,
        num_steps=args.steps,
        bounds=(lower, upper),
        rollout=model.rollout,
        seed=seed,
        **demo,
    )
    trace = []
    for _ in range(args.steps):
        opt.step()
        info = opt.last_step
        trace.append((float(info.demo_wins.double().mean()), float(1.0 / info.weights.double().square().sum())))
    return trace


def _stats(values: list[float]) -> str:
    t = torch.tensor(values, dtype=torch.float64)
    return f"{t.mean():.3f} ± {t.std(unbiased=False):.3f}"


def tables(results: dict, args) -> tuple[str, str, dict]:
    """The summary table, the per-seed table and the win counts of the demo arm."""
    header = ["", "task reward ↑", "distance to reference (m) ↓", "torso height variance (m²) ↓", "upright fraction ↑", "s/run"]
    rows = []
    for arm in ARMS:
        runs = results[arm]
        rows.append(
            [f"MBD, {arm}"]
            + [_stats([r[m] for r in runs]) for m in METRICS]
            + [f"{sum(r['time'] for r in runs) / len(runs):.0f}"]
        )
    summary = markdown_table(header, rows)
    per_seed_rows = []
    for i in range(args.seeds):
        a, b = results["no demo"][i], results["demo"][i]
        per_seed_rows.append(
            [str(args.first_seed + i)]
            + [f"{a[m]:.3f} → {b[m]:.3f}" for m in METRICS]
        )
    per_seed = markdown_table(["seed", "task reward", "distance (m)", "height variance (m²)", "upright"], per_seed_rows)
    wins = dict(
        distance=sum(b["distance"] < a["distance"] for a, b in zip(results["no demo"], results["demo"])),
        upright=sum(b["upright"] > a["upright"] for a, b in zip(results["no demo"], results["demo"])),
        both=sum(
            b["distance"] < a["distance"] and b["upright"] > a["upright"]
            for a, b in zip(results["no demo"], results["demo"])
        ),
        upright_not_worse=sum(b["upright"] >= a["upright"] for a, b in zip(results["no demo"], results["demo"])),
    )
    return summary, per_seed, wins


def figure(results: dict, reference: torch.Tensor, model: HumanoidJog, path: Path, first_seed: int = 0) -> Path:
    """Torso height and forward position over time per seed, both arms, against the reference.

    The arms differ in colour and in line style (no demo solid, demo dashed), so curves that
    coincide stay visible; one legend below the panels covers no data.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    H = reference.shape[0]
    t = model.control_dt * torch.arange(1, H + 1)
    # the reference's torso point sits below the torso sensor by the rest-pose offset
    ref_torso = reference[:, 0] + model._torso_offset.cpu()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.4))
    colors = {"no demo": "tab:red", "demo": "tab:blue"}
    styles = {"no demo": "-", "demo": "--"}
    for arm in ARMS:
        for i, r in enumerate(results[arm]):
            label = f"MBD, {arm} (one line per seed)" if i == 0 else None
            for ax, key in ((axes[0], "torso_z"), (axes[1], "torso_x")):
                ax.plot(t, r[key], color=colors[arm], ls=styles[arm], alpha=0.7, lw=1.3, label=label if key == "torso_z" else None)
    for ax, k in ((axes[0], 2), (axes[1], 0)):
        ax.plot(t, ref_torso[:, k], "k:", lw=2.2, label="mocap reference" if k == 2 else None)
        ax.set_xlabel("time (s)")
        ax.grid(alpha=0.3)
    axes[0].axhline(1.0, color="gray", lw=0.8, ls="-.", label="upright threshold of the root (1 m)")
    axes[0].set_ylabel("torso height (m)")
    axes[0].set_title("torso height")
    axes[1].set_ylabel("torso x (m)")
    axes[1].set_title("forward progress")
    seeds = torch.arange(len(results["demo"]))
    width = 0.38
    for j, arm in enumerate(ARMS):
        axes[2].bar(seeds + (j - 0.5) * width, [r["distance"] for r in results[arm]], width, color=colors[arm],
                    hatch="//" if arm == "demo" else None, edgecolor="white")
    axes[2].set_xlabel("seed")
    axes[2].set_ylabel("mean distance to reference (m)")
    axes[2].set_title("tracked-point distance (red: no demo, blue hatched: demo)", fontsize=10)
    axes[2].set_xticks(seeds, [str(first_seed + int(i)) for i in seeds])
    axes[2].xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0.09, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)  # below the panels
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--first-seed", type=int, default=0, help="seeds FIRST .. FIRST + SEEDS - 1 (held-out checks)")
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--horizon", type=int, default=50)
    p.add_argument("--frame-skip", type=int, default=5, help="physics steps per control step (5: the authors' 0.03 s)")
    p.add_argument("--temperature", type=float, default=0.1)
    p.add_argument("--demo-sigma", type=float, default=DEFAULT_DEMO_SIGMA, help="demo likelihood std of x and y (m)")
    p.add_argument("--height-sigma", type=float, default=DEFAULT_HEIGHT_SIGMA, help="demo likelihood std of z (m)")
    p.add_argument(
        "--demo-units", default="reward", choices=("reward", "logit"), help="how Eq. 13 scales the demo likelihood"
    )
    p.add_argument(
        "--likelihood",
        default="gaussian",
        choices=LIKELIHOODS,
        help="the demo likelihood: 'gaussian' (ours: per-axis sigmas) or 'authors' (-mean (min(|d|, "
        f"{AUTHORS_DEMO_CLIP}) / {AUTHORS_DEMO_CLIP})^2 over the tracked points' distances; the sigmas are unused)",
    )
    p.add_argument(
        "--demo-reward",
        default=None,
        help="p_J(Y_demo): 'reference' (the task reward of the reference's torso path), 'first-best' "
        "(the best sample reward of the first step) or a number; default 'reference' with "
        f"--likelihood gaussian, the authors' {AUTHORS_DEMO_REWARD} with --likelihood authors",
    )
    p.add_argument("--axes", default="xyz", help="world axes of the tracked points the demo covers (e.g. z)")
    p.add_argument("--clip", default=DEFAULT_CLIP,
                   help="'mocap' (the authors' clip, dynamics.data.clip_path) or a .npz in the layout of jog_xref.npz")
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS, help="run only these arms (tuning)")
    p.add_argument(
        "--weights",
        action="store_true",
        help="instead of the comparison, print per step how many samples the demo won and the weights' "
        "effective sample size (demo arm)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-write", action="store_true", help="print the tables only; leave docs/ alone")
    args = p.parse_args(argv)
    if args.demo_reward is None:
        args.demo_reward = "reference" if args.likelihood == "gaussian" else str(AUTHORS_DEMO_REWARD)
    if args.seeds < 1 or args.first_seed < 0:
        p.error(f"--seeds must be >= 1 and --first-seed >= 0, got {args.seeds} and {args.first_seed}")
    if not (args.demo_sigma > 0 and args.height_sigma > 0):
        p.error(f"--demo-sigma and --height-sigma must be > 0, got {args.demo_sigma} and {args.height_sigma}")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    command = "python -m benchmarks.humanoid_jog " + " ".join(argv if argv is not None else sys.argv[1:])
    start = time.perf_counter()
    if args.weights:  # diagnostics of the demo arm's weights only
        model = HumanoidJog(horizon=args.horizon, frame_skip=args.frame_skip)
        demo = demo_options(model, args)
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            trace = weight_trace(model, demo, args, seed)
            rows = [[str(k + 1), f"{won:.2f}", f"{ess:.1f} of {args.samples}"] for k, (won, ess) in enumerate(trace)]
            print(f"seed {seed}, demo arm:")
            print(markdown_table(["step", "samples the demo won", "effective sample size"], rows))
        return
    results, reference, model = run(args)
    if set(args.arms) != set(ARMS):  # tuning run: per-run lines only
        return
    summary, per_seed, wins = tables(results, args)
    total = time.perf_counter() - start
    verdict = (
        f"With the demo: lower distance on {wins['distance']}/{args.seeds} seeds, more time upright on "
        f"{wins['upright']}/{args.seeds} (not less on {wins['upright_not_worse']}/{args.seeds}), both on {wins['both']}/{args.seeds}."
    )
    print(f"demo likelihood {args.likelihood!r}, demo_reward {args.demo_reward}")
    print(summary)
    print(per_seed)
    print(verdict)
    print(f"total {total:.0f} s on {machine()}")
    if args.no_write:
        return
    fig = figure(results, reference, model, figure_path("humanoid_jog.png"), args.first_seed)
    seed_text = "" if args.first_seed == 0 else f" ({args.first_seed} to {args.first_seed + args.seeds - 1})"
    axes_text = "" if args.axes == "xyz" else f" ({', '.join(args.axes)} coordinates only)"
    if args.likelihood == "gaussian":
        likelihood_text = (
            f'`likelihood = "gaussian"`, `demo_sigma` = {args.demo_sigma} m for x and y and {args.height_sigma} m for z'
        )
    else:
        likelihood_text = (
            f'`likelihood = "authors"`: `-mean (min(|d|, {AUTHORS_DEMO_CLIP} m) / {AUTHORS_DEMO_CLIP} m)^2` over the '
            "tracked points' distances to the reference"
        )
    runs = [r for arm in ARMS for r in results[arm]]
    per_rollout = sum(r["time"] for r in runs) / (len(runs) * args.samples * args.steps)  # seconds
    reward_text = {
        "reference": "the task reward of the torso path the reference implies",
        "first-best": "the best sample reward of the first diffusion step",
    }.get(args.demo_reward, args.demo_reward)
    text = f"""## Humanoid jogging: partial-state mocap demonstration

`{command.strip()}` on {machine()} ({total / 60:.0f} min in all).

MBD plans the `humanoid_jog` task (gymnasium's humanoid, H = {args.horizon} control steps of
{model.control_dt:.3f} s, humanoid-running reward) with and without the demonstration of
torso, thigh and shin positions{axes_text} from `{"jog_xref.npz" if args.clip == DEFAULT_CLIP else Path(args.clip).name}` (Eq. 13, `demo_units = "{args.demo_units}"`,
{likelihood_text},
`demo_reward` = {reward_text}). Equal budget:
n = {args.samples} rollouts per step, {args.steps} diffusion steps, temperature {args.temperature},
the same {args.seeds} sampling seeds{seed_text}. A rollout took {1000 * per_rollout:.1f} ms here, so the paper's
n = 300 and 100 steps would take about {300 * 100 * per_rollout / 60:.0f} min per seed and arm. Mean ± std over seeds:

{summary}

Per seed, without → with the demo:

{per_seed}

{verdict}

![torso height, forward progress and distance to the reference]({fig.relative_to(fig.parent.parent).as_posix()})
"""
    write_section("humanoid_jog", text)
    print(f"wrote docs/results.md section humanoid_jog and {fig}")


if __name__ == "__main__":
    main()
