"""torch-mbd: Model-Based Diffusion for trajectory optimization and black-box problems, in PyTorch."""

from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
extras = {
    "progress": ["tqdm>=4.60"],
    "baselines": ["cma>=3.3"],
    "examples": ["tqdm>=4.60", "matplotlib>=3.6"],
    # examples/mnist_mlp.py --download: torchvision's MNIST (imported only to download; install the
    # torchvision built for your torch, e.g. from the same --index-url)
    "mnist": ["torchvision>=0.16"],
    "docs": ["mkdocs>=1.5", "mkdocs-material>=9", "mkdocstrings[python]>=0.24"],
    # MuJoCo on the CPU (mujoco.rollout); gymnasium ships the locomotion MJCF files.
    "mujoco": ["mujoco>=3.3", "gymnasium>=1.0"],
    # Videos of MuJoCo plans: pillow writes GIFs, imageio with its ffmpeg binary writes MP4s.
    "video": ["pillow>=9", "imageio>=2.9", "imageio-ffmpeg>=0.4"],
}
# COCO's bbob suite and the peers benchmarks/bbob.py compares against (cocopp imports six
# without declaring it; EvoTorch's SNES and XNES).
extras["bbob"] = ["coco-experiment>=2.6", "cocopp>=2.6", "six", "cma>=3.3", "evotorch>=0.5"]
extras["warp"] = extras["mujoco"] + ["mujoco-warp>=3.8", "warp-lang>=1.8"]
extras["mjx"] = extras["mujoco"] + ["mujoco-mjx>=3.3", "jax>=0.5"]
# not torchvision: a wheel that does not match the installed torch breaks at import (its test skips)
extras["test"] = sorted(
    {"pytest>=7", "hypothesis>=6", "coco-experiment>=2.6"}
    | set(extras["progress"])
    | set(extras["baselines"])
    | set(extras["examples"])
    | set(extras["warp"])
    | set(extras["mjx"])
    | set(extras["video"])
)
extras["all"] = sorted({req for reqs in extras.values() for req in reqs})

setup(
    name="torch-mbd",
    version="0.1.0",
    description="Model-Based Diffusion (Pan et al.): a GPU-batched, gradient-free trajectory optimizer for PyTorch",
    long_description=(here / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    license_files=["LICENSE"],  # in the wheel's .dist-info/licenses and the sdist
    python_requires=">=3.10",
    packages=find_packages(include=["torch_mbd", "torch_mbd.*", "dynamics", "dynamics.*"]),
    package_data={"dynamics": ["assets/*.xml"]},
    install_requires=["torch>=2.1", "numpy>=1.23"],
    extras_require=extras,
    entry_points={"console_scripts": ["torch-mbd=torch_mbd.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Intended Audience :: Science/Research",
    ],
)
