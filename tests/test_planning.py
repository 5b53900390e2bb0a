"""The RRT planner's seeding: an int seed is reproducible, ``None`` is a fresh random seed."""

import pytest
import torch

from dynamics.car import Car2D
from dynamics.planning import rrt, rrt_demo


@pytest.fixture(scope="module")
def car():
    return Car2D()


def _rrt(car, **seeding):
    return rrt(car.initial_state[:2], car.goal, car.obstacles, car.workspace, **seeding)


def test_an_int_seed_gives_the_same_tree_every_time(car):
    assert torch.equal(_rrt(car, seed=3), _rrt(car, seed=3))
    assert not torch.equal(_rrt(car, seed=3), _rrt(car, seed=4))


def test_no_seed_is_a_fresh_random_seed_from_the_global_rng(car):
    """Not seed 0: two unseeded calls differ, and torch.manual_seed makes them reproducible."""
    torch.manual_seed(11)
    first, second = _rrt(car), _rrt(car)
    assert not torch.equal(first, second)
    assert not any(torch.equal(path, _rrt(car, seed=0)) for path in (first, second))
    torch.manual_seed(11)
    assert torch.equal(_rrt(car), first)


def test_demonstrations_follow_the_same_rule(car):
    torch.manual_seed(5)
    first, second = rrt_demo(car), car.demonstration("rrt")["demo"]
    assert not torch.equal(first, second)
    assert torch.equal(rrt_demo(car, seed=2), car.demonstration("rrt", seed=2)["demo"])


def test_a_given_generator_wins_over_the_seed(car):
    a = _rrt(car, generator=torch.Generator().manual_seed(7), seed=1)
    assert torch.equal(a, _rrt(car, seed=7))
    with pytest.raises(ValueError, match="Invalid seed: expected an integer"):  # checks.check_seed's rule
        _rrt(car, seed=1.5)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        _rrt(car, generator=7)
