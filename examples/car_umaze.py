"""Drive the bicycle car round the U-maze with MBD steered by an RRT demonstration (paper, Fig. 4b).

The same as ``torch-mbd plan car2d --demo rrt --out car_umaze.png`` in library calls::

    python examples/car_umaze.py                         # prints the result, writes car_umaze.png
    python examples/car_umaze.py --no-demo --out free.png  # the paper's finding without a demonstration
    python examples/car_umaze.py --help                  # every option and its default

It writes only the figure given by ``--out`` (needs matplotlib: ``pip install 'torch-mbd[examples]'``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

if __package__ in (None, ""):  # run from a checkout: make `torch_mbd` and `dynamics` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dynamics.car import Car2D  # noqa: E402
from torch_mbd import plan  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """The example's options; ``--help`` shows each one's default."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--samples", type=int, default=256, help="rollouts per diffusion step")
    p.add_argument("--steps", type=int, default=100, help="diffusion steps (the paper's 100)")
    p.add_argument("--temperature", type=float, default=0.1, help="sampling temperature lambda")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler and of the RRT")
    p.add_argument("--demo", action=argparse.BooleanOptionalAction, default=True,
                   help="steer the diffusion with the RRT demonstration")
    p.add_argument("--out", default="car_umaze.png", help="the figure to write (.png, .pdf, .svg)")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(argv)
    for name in ("samples", "steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if not args.temperature > 0:
        p.error(f"--temperature must be > 0, got {args.temperature}")
    if not Path(args.out).parent.exists():
        p.error(f"--out {args.out}: the folder {Path(args.out).parent} does not exist")
    return args


def draw(car: Car2D, result, demo, path: str) -> None:
    """The map: obstacle, start, goal, faded intermediate iterates, the demonstration and the plan."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5.6))
    car.draw(ax)  # obstacle, start, goal
    start = car.initial_state[None, :2]
    for k, actions in enumerate(result.history[::12]):  # faded intermediate iterates
        path_k = torch.cat([start, car.rollout(actions[None]).states[0, :, :2]])
        ax.plot(path_k[:, 0], path_k[:, 1], color="tab:blue", alpha=0.1 + 0.05 * k, lw=1,
                label="diffusion iterates" if k == 0 else None)
    if demo is not None:
        rrt_path = torch.cat([start, demo["demo"][:, :2]])
        ax.plot(rrt_path[:, 0], rrt_path[:, 1], "--", color="tab:orange", label="RRT demonstration")
    final = torch.cat([start, result.states[:, :2]])
    ax.plot(final[:, 0], final[:, 1], "-o", color="tab:red", markersize=2, label=f"MBD, reward {result.reward:.3f}")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=7, frameon=False)  # below the map
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        import matplotlib  # noqa: F401  (checked before planning: a missing library loses no plan)
    except ImportError:
        sys.exit("car_umaze.py draws its figure with matplotlib: pip install 'torch-mbd[examples]'")
    car = Car2D()  # state [x, y, theta, v, delta], action [a, delta_rate] in [-1, 1], H = car.horizon
    demo = car.demonstration("rrt", seed=args.seed) if args.demo else None  # dict(demo=[H, 5], demo_mask, ...)
    result = plan(car, num_samples=args.samples, num_steps=args.steps, temperature=args.temperature, seed=args.seed,
                  **(demo or {}))

    print(result)
    print(
        "feasible:", bool(result.feasible),
        "| goal reached (final position in the goal region):", bool(car.reached_goal(result.states)),
        "| passed through it:", bool(car.passed_goal(result.states)),
    )
    draw(car, result, demo, args.out)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
