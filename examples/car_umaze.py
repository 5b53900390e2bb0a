"""Drive the bicycle car round the U-maze with MBD steered by an RRT demonstration (paper, Fig. 4b).

The same as ``torch-mbd plan car2d --demo rrt --out car_umaze.png`` in library calls::

    python examples/car_umaze.py            # prints the result, writes car_umaze.png
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from dynamics.car import Car2D
from torch_mbd import plan

car = Car2D()  # state [x, y, theta, v, delta], action [a, delta_rate] in [-1, 1], H = 50, dt = 0.1
demo = car.demonstration("rrt", seed=0)  # dict(demo=[50, 5], demo_mask=x,y, demo_reward, demo_sigma)
result = plan(car, num_samples=256, num_steps=100, temperature=0.1, seed=0, **demo)

print(result)
print("feasible:", bool(result.feasible), "| goal reached:", bool(car.reached_goal(result.states)))

fig, ax = plt.subplots(figsize=(5, 5))
car.draw(ax)  # obstacle, start, goal
start = car.initial_state[None, :2]
for k, actions in enumerate(result.history[::12]):  # faded intermediate iterates
    path = torch.cat([start, car.rollout(actions[None]).states[0, :, :2]])
    ax.plot(path[:, 0], path[:, 1], color="tab:blue", alpha=0.1 + 0.05 * k, lw=1)
rrt_path = torch.cat([start, demo["demo"][:, :2]])
ax.plot(rrt_path[:, 0], rrt_path[:, 1], "--", color="tab:orange", label="RRT demonstration")
final = torch.cat([start, result.states[:, :2]])
ax.plot(final[:, 0], final[:, 1], "-o", color="tab:red", markersize=2, label=f"MBD, reward {result.reward:.3f}")
ax.legend(loc="lower left", fontsize=7)
fig.savefig("car_umaze.png", dpi=150)
print("wrote car_umaze.png")
