"""Humanoid jogging (paper, section 5.2): plan with and without a partial-state mocap demonstration.

MBD plans the ``humanoid_jog`` task twice from the same seed and budget: once on the task
reward alone, once steered by human jogging data (torso, thigh and shin positions only, not
dynamically feasible for the robot). The clip is the authors' ``jog_xref`` (``--clip mocap``, the
default): downloaded once from their repository into the user cache ``~/.cache/torch-mbd``, or
read from ``$TORCH_MBD_DATA/mocap/jog_xref.npz`` when that variable names an offline data folder
(:func:`dynamics.data.clip_path`); or your own ``.npz`` clip in the same layout. It writes

* ``OUT.png``: torso height and ankle positions over time, both plans against the reference;
* ``OUT.gif`` (or ``.mp4`` with ``--video mp4``): the two rollouts side by side, no demo on the
  left, demo on the right, when offscreen OpenGL works (``MUJOCO_GL=egl`` or ``osmesa``);
* ``OUT.npz``: both action sequences and the reference.

Run (a couple of minutes on a 2-core CPU at the defaults, which are far below the paper's budget;
``--help`` lists every option and its default)::

    python examples/humanoid_jog.py
    python examples/humanoid_jog.py --samples 128 --steps 40 --clip my_clip.npz --out runs/jog

Needs ``pip install 'torch-mbd[mujoco,examples]'``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # run from a checkout: make `torch_mbd` and `dynamics` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dynamics.humanoid_jog import (  # noqa: E402
    DEFAULT_CLIP,
    DEFAULT_DEMO_SIGMA,
    DEFAULT_HEIGHT_SIGMA,
    HumanoidJog,
    reference_distance,
    upright_fraction,
)
from torch_mbd import plan  # noqa: E402

ANKLES = ("left_foot", "right_foot")  # robot bodies whose origins are the ankles
CLIP_ANKLES = ("ltoe", "rtoe")  # the clip's ankle-level points


def body_positions(model: HumanoidJog, states: torch.Tensor, bodies: tuple[str, ...]) -> np.ndarray:
    """World positions ``[T, len(bodies), 3]`` of ``bodies`` along ``states [T, nx]`` (forward kinematics)."""
    import mujoco

    data = mujoco.MjData(model.mj_model)
    ids = [model.mj_model.body(b).id for b in bodies]
    out = np.empty((len(states), len(bodies), 3))
    for t, q in enumerate(states[:, model.state_slices["qpos"]].double().cpu().numpy()):
        data.qpos[:] = q
        mujoco.mj_kinematics(model.mj_model, data)
        out[t] = data.xpos[ids]
    return out


def plot(model, results, reference, ankles_ref, path: Path) -> Path:
    """Torso height, ankle x and ankle height over time: both plans against the reference.

    Colour tells the plan (red: no demo, blue: demo, black: the mocap reference), line style the
    ankle (solid left, dotted right); the no-demo plan is drawn wide and the demo plan thin with
    markers on top, so a curve that coincides with another stays visible. The legend sits below.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    t = model.control_dt * np.arange(1, reference.shape[0] + 1)
    ref_torso = (reference[:, 0] + model._torso_offset.cpu()).numpy()  # where the torso sensor would be
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.4))
    styles = {
        "no demo": dict(color="tab:red", lw=2.6, alpha=0.6),
        "demo": dict(color="tab:blue", lw=1.2, marker="o", markersize=2.5, markevery=4),
    }
    for arm, r in results.items():
        axes[0].plot(t, r["torso"][:, 2], **styles[arm])
        for j, ls in enumerate(("-", ":")):
            axes[1].plot(t, r["ankles"][:, j, 0], ls=ls, **styles[arm])
            axes[2].plot(t, r["ankles"][:, j, 2], ls=ls, **styles[arm])
    axes[0].plot(t, ref_torso[:, 2], "k--", lw=1.5)
    for j, ls in enumerate(("-", ":")):
        axes[1].plot(t, ankles_ref[:, j, 0], color="k", ls=ls, lw=1.5, alpha=0.7)
        axes[2].plot(t, ankles_ref[:, j, 2], color="k", ls=ls, lw=1.5, alpha=0.7)
    axes[0].set_ylabel("torso height (m)")
    axes[1].set_ylabel("ankle x (m)")
    axes[2].set_ylabel("ankle height (m)")
    for ax, title in zip(axes, ("torso height", "ankles: forward position", "ankles: height")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("time (s)")
        ax.grid(alpha=0.3)
    handles = [
        Line2D([], [], **styles["no demo"], label="MBD, no demo"),
        Line2D([], [], **styles["demo"], label="MBD, demo"),
        Line2D([], [], color="k", ls="--", lw=1.5, label="mocap reference"),
        Line2D([], [], color="gray", ls="-", label="left ankle"),
        Line2D([], [], color="gray", ls=":", label="right ankle"),
    ]
    fig.suptitle("humanoid jogging: MBD without and with the mocap demonstration")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.legend(handles=handles, loc="lower center", ncol=5, fontsize=8, frameon=False)  # below the panels
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def side_by_side(model, actions: dict, path: Path) -> Path:
    """The rollouts of both plans in one video, no demo left, demo right."""
    from dynamics.render import render_frames, simulate_qpos, write_video

    frames = [render_frames(model, simulate_qpos(model, actions[arm]), width=400, height=320) for arm in ("no demo", "demo")]
    return write_video(np.concatenate(frames, axis=2), path, fps=1.0 / model.control_dt)


def build_parser() -> argparse.ArgumentParser:
    """The example's options; ``--help`` shows each one's default."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--samples", type=int, default=64,
                   help="rollouts per diffusion step (small, for a CPU; the paper's runs use far more)")
    p.add_argument("--steps", type=int, default=20, help="diffusion steps (the paper's: 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of both plans")
    p.add_argument("--clip", default=DEFAULT_CLIP,
                   help="'mocap' (the authors' clip: cache, $TORCH_MBD_DATA or a one-time download) or a .npz "
                   "in the layout of jog_xref.npz")
    p.add_argument("--demo-sigma", type=float, default=DEFAULT_DEMO_SIGMA, help="demo likelihood std of x and y (m)")
    p.add_argument("--height-sigma", type=float, default=DEFAULT_HEIGHT_SIGMA, help="demo likelihood std of z (m)")
    p.add_argument("--out", default="humanoid_jog", help="output prefix: writes OUT.png, OUT.npz and the video OUT.gif/.mp4")
    p.add_argument("--video", default="gif", choices=["gif", "mp4", "none"], help="the video's format, or none")
    return p


def parse_args(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    for name in ("samples", "steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    for name in ("demo_sigma", "height_sigma"):
        if not getattr(args, name) > 0:
            p.error(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    try:
        import matplotlib  # noqa: F401  (checked before planning: a missing library loses no plan)
    except ImportError:
        p.error("the figure needs matplotlib: pip install 'torch-mbd[examples]'")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = HumanoidJog()
    try:
        demo = model.demonstration(args.clip, demo_sigma=args.demo_sigma, height_sigma=args.height_sigma)
    except (FileNotFoundError, ValueError) as err:  # no clip (dynamics.data.DataNotFoundError) or a bad one: one line
        print(f"humanoid_jog.py: error: --clip {args.clip}: {' '.join(str(err).split())}", file=sys.stderr)
        raise SystemExit(2) from None
    reference = model.reference(args.clip)
    results, actions = {}, {}
    for arm, options in (("no demo", {}), ("demo", demo)):
        res = plan(model, num_samples=args.samples, num_steps=args.steps, seed=args.seed, **options)
        states = res.states.double()
        qpos = states[:, model.state_slices["qpos"]]
        results[arm] = dict(
            torso=states[:, model.state_slices["sensordata"]][:, model.sensor_slices["torso_pos"]].numpy(),
            ankles=body_positions(model, res.states, ANKLES),
        )
        actions[arm] = res.actions
        distance = float(reference_distance(model.tracked_points(states), reference))
        print(
            f"{arm:8s} task reward {res.reward:+.3f}  distance to reference {distance:.3f} m  "
            f"upright {float(upright_fraction(qpos)):.0%}  ({res.time:.0f} s)"
        )
    ankles_ref = model.reference(args.clip, keys=CLIP_ANKLES).numpy()
    print("wrote", plot(model, results, reference, ankles_ref, out.with_suffix(".png")))
    np.savez(
        out.with_suffix(".npz"),
        actions_no_demo=actions["no demo"].numpy(),
        actions_demo=actions["demo"].numpy(),
        reference=reference.numpy(),
    )
    if args.video != "none":
        try:
            print("wrote", side_by_side(model, actions, out.with_suffix("." + args.video)))
        except (RuntimeError, ImportError) as err:  # no OpenGL backend (or no ffmpeg): the plot stands
            print(f"no video ({err}); see the plot instead")


if __name__ == "__main__":
    main()
