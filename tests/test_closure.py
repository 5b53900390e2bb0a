"""batched_closure: batched losses equal one-by-one losses, chunking, buffers, argument checks."""

from copy import deepcopy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torch_mbd import MBDOptimizer, batched_closure


def small_net(seed=0, dtype=torch.float32, device="cpu"):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).to(device=device, dtype=dtype)


def random_candidates(model, n, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [p.detach() + torch.randn(n, *p.shape, generator=g, dtype=p.dtype).to(p.device) for p in model.parameters()]


def one_by_one(model, candidates, loss_fn, *inputs):
    """The reference: load candidate j into a copy of the model and evaluate it."""
    losses = []
    for j in range(candidates[0].shape[0]):
        copy = deepcopy(model)
        with torch.no_grad():
            for p, c in zip(copy.parameters(), candidates):
                p.copy_(c[j])
            out = copy(*inputs[:-1])
            losses.append(loss_fn(out, inputs[-1]))
    return torch.stack(losses)


def test_batched_losses_equal_one_by_one(device, dtype):
    model = small_net(dtype=dtype, device=device)
    x = torch.randn(11, 5, dtype=dtype, device=device)
    y = torch.randint(0, 3, (11,), device=device)
    candidates = [c.to(device) for c in random_candidates(model, 9)]
    closure = batched_closure(model, F.cross_entropy, x, y)
    losses = closure(candidates)
    assert losses.shape == (9,) and losses.dtype == dtype
    expected = one_by_one(model, candidates, F.cross_entropy, x, y)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(losses, expected, rtol=tol, atol=tol)
    assert len(set(losses.tolist())) == 9  # the candidates really differ


def test_chunking_gives_the_same_losses():
    model = small_net()
    x, y = torch.randn(6, 5), torch.randint(0, 3, (6,))
    candidates = random_candidates(model, 10)
    full = batched_closure(model, F.cross_entropy, x, y)(candidates)
    for chunk in (1, 3, 10, 64):
        torch.testing.assert_close(batched_closure(model, F.cross_entropy, x, y, chunk_size=chunk)(candidates), full)


def test_model_is_left_unchanged_and_no_grad_is_computed():
    model = small_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(6, 5), torch.randint(0, 3, (6,))
    losses = batched_closure(model, F.cross_entropy, x, y)(random_candidates(model, 4))
    assert not losses.requires_grad
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert all(p.grad is None for p in model.parameters())


def test_batchnorm_buffers_not_corrupted_and_batch_statistics_used():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2))
    model.train()
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    x, y = torch.randn(16, 4) * 3 + 1, torch.randint(0, 2, (16,))
    candidates = random_candidates(model, 5)
    losses = batched_closure(model, F.cross_entropy, x, y)(candidates)
    for k, v in model.named_buffers():  # running stats, num_batches_tracked: untouched
        assert torch.equal(v, buffers[k]), k
    # Each candidate saw batch statistics, as a fresh copy in training mode does.
    expected = one_by_one(model, candidates, F.cross_entropy, x, y)
    torch.testing.assert_close(losses, expected)
    # In eval mode the running statistics are used, and still not modified.
    model.eval()
    eval_losses = batched_closure(model, F.cross_entropy, x, y)(candidates)
    torch.testing.assert_close(eval_losses, one_by_one(model, candidates, F.cross_entropy, x, y))
    assert not torch.allclose(eval_losses, losses)
    for k, v in model.named_buffers():
        assert torch.equal(v, buffers[k]), k


def test_params_subset_and_optimizer_order():
    model = small_net()
    first, last = model[0], model[2]
    x, y = torch.randn(6, 5), torch.randint(0, 3, (6,))
    # Optimize only the last layer, handed in as an optimizer: the first layer keeps its values.
    opt = MBDOptimizer([last.bias, last.weight], num_samples=4, seed=0)
    closure = batched_closure(model, F.cross_entropy, x, y, params=opt)
    g = torch.Generator().manual_seed(3)
    bias = torch.randn(4, 3, generator=g)
    weight = torch.randn(4, 3, 7, generator=g)
    losses = closure([bias, weight])
    for j in range(4):
        ref = F.cross_entropy(F.linear(torch.tanh(first(x)), weight[j], bias[j]), y)
        torch.testing.assert_close(losses[j], ref.detach())


def test_unsupervised_single_input():
    model = small_net()
    x = torch.randn(6, 5)
    closure = batched_closure(model, lambda out: out.square().mean(), x)
    candidates = random_candidates(model, 3)
    for j, loss in enumerate(closure(candidates)):
        w1, b1, w2, b2 = (c[j] for c in candidates)
        torch.testing.assert_close(loss, (F.linear(torch.tanh(F.linear(x, w1, b1)), w2, b2)).square().mean())


def test_drives_mbd_optimizer_step():
    model = small_net()
    x, y = torch.randn(32, 5), torch.randint(0, 3, (32,))
    opt = MBDOptimizer(model.parameters(), num_samples=16, num_steps=5, seed=0)
    loss = opt.step(batched_closure(model, F.cross_entropy, x, y))
    assert loss.shape == () and torch.isfinite(loss)


@pytest.mark.parametrize(
    "kwargs, inputs, error, match",
    [
        ({"model": "not a module"}, None, TypeError, "model"),
        ({"loss_fn": 3}, None, TypeError, "loss_fn"),
        ({}, (), ValueError, "inputs"),
        ({"chunk_size": 0}, None, ValueError, "chunk_size"),
        ({"chunk_size": 2.5}, None, ValueError, "chunk_size"),
        ({"params": torch.zeros(3)}, None, TypeError, "params"),
        ({"params": [torch.zeros(3)]}, None, ValueError, "not a parameter"),
        ({"params": ["w"]}, None, TypeError, "params"),
    ],
)
def test_bad_arguments(kwargs, inputs, error, match):
    model = small_net()
    args = {"model": model, "loss_fn": F.cross_entropy}
    args.update(kwargs)
    inputs = (torch.randn(4, 5), torch.randint(0, 3, (4,))) if inputs is None else inputs
    with pytest.raises(error, match=match):
        batched_closure(args.pop("model"), args.pop("loss_fn"), *inputs, **args)


def test_duplicate_params_rejected():
    model = small_net()
    with pytest.raises(ValueError, match="twice"):
        batched_closure(model, F.cross_entropy, torch.randn(2, 5), torch.zeros(2, dtype=torch.long), params=[model[0].weight] * 2)


def test_bad_candidates_and_losses():
    model = small_net()
    x, y = torch.randn(4, 5), torch.randint(0, 3, (4,))
    closure = batched_closure(model, F.cross_entropy, x, y)
    candidates = random_candidates(model, 3)
    with pytest.raises(ValueError, match="candidate tensors"):
        closure(candidates[:2])
    with pytest.raises(ValueError, match="shape"):
        closure([candidates[0][:, :2]] + candidates[1:])
    per_sample = batched_closure(model, lambda out, t: F.cross_entropy(out, t, reduction="none"), x, y)
    with pytest.raises(ValueError, match="0-dim"):
        per_sample(candidates)


# --------------------------------------------------------------------------- robustness (issue 15)
def twin_layer_net():
    """Two layers of one shape: a positional mix-up of their candidates passes every shape check."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4))


def reference_losses(model, optimizer, loss_fn, x, y):
    """The losses of the optimizer's last samples, each loaded into a copy by parameter identity."""
    samples = optimizer.last_step.samples[0]  # [n, D] in the optimizer's parameter order
    names = {id(p): name for name, p in model.named_parameters()}
    losses = []
    for row in samples:
        copy = deepcopy(model)
        params = dict(copy.named_parameters())
        offset = 0
        with torch.no_grad():
            for p in optimizer.param_groups[0]["params"]:
                params[names[id(p)]].copy_(row[offset : offset + p.numel()].reshape(p.shape))
                offset += p.numel()
            losses.append(loss_fn(copy(x), y))
    return torch.stack(losses)


@pytest.mark.parametrize("how", ["default params", "params in the model's order", "params in a third order"])
def test_an_optimizer_in_another_order_evaluates_every_candidate_on_the_right_layer(how):
    model = twin_layer_net()
    w1, b1, w2, b2 = model.parameters()
    x, y = torch.randn(8, 4), torch.randn(8, 4)
    opt = MBDOptimizer([w2, b2, w1, b1], num_samples=6, num_steps=3, seed=0)  # not the model's order
    params = {"default params": None, "params in the model's order": [w1, b1, w2, b2],
              "params in a third order": [b1, w2, w1, b2]}[how]
    closure = batched_closure(model, F.mse_loss, x, y, params=params)
    opt.step(closure)
    expected = reference_losses(model, opt, F.mse_loss, x, y)
    torch.testing.assert_close(-opt.last_step.rewards[0], expected)


def test_bind_params_refuses_a_tensor_the_model_does_not_have():
    model = twin_layer_net()
    closure = batched_closure(model, F.mse_loss, torch.randn(2, 4), torch.randn(2, 4))
    opt = MBDOptimizer([model[0].weight, torch.zeros(4, 4)], num_samples=4, seed=0)
    with pytest.raises(ValueError, match="not a parameter of model"):
        opt.step(closure)


@pytest.mark.parametrize(
    "inputs, error, match",
    [
        ((torch.randn(4, 5, dtype=torch.float64), torch.randint(0, 3, (4,))), ValueError,
         r"inputs\[0\].*float64.*float32"),
        ((torch.randn(4, 5), torch.randn(4, 3, dtype=torch.float64)), ValueError, r"inputs\[1\].*float64"),
        ((torch.randn(4, 5).numpy(), torch.randint(0, 3, (4,))), TypeError, r"inputs\[0\].*NumPy"),
        ((torch.randn(4, 5, device="meta"), torch.randint(0, 3, (4,))), ValueError, r"inputs\[0\].*meta"),
    ],
)
def test_inputs_of_another_dtype_or_device_fail_at_construction(inputs, error, match):
    with pytest.raises(error, match=match):
        batched_closure(small_net(), F.cross_entropy, *inputs)


def test_integer_targets_and_non_tensor_arguments_pass():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(5, 3)

        def forward(self, x, scale):
            return self.linear(x) * scale

    model = Scaled()
    x, y = torch.randn(4, 5), torch.randint(0, 3, (4,))
    closure = batched_closure(model, F.cross_entropy, x, 2.0, y)
    candidates = random_candidates(model, 3)
    losses = closure(candidates)
    for j in range(3):
        ref = F.cross_entropy(F.linear(x, candidates[0][j], candidates[1][j]) * 2.0, y)
        torch.testing.assert_close(losses[j], ref)


def test_bad_candidates_dtype_and_empty_batch():
    model = small_net()
    closure = batched_closure(model, F.cross_entropy, torch.randn(4, 5), torch.randint(0, 3, (4,)))
    candidates = random_candidates(model, 3)
    with pytest.raises(ValueError, match="float32"):
        closure([candidates[0].double()] + candidates[1:])
    with pytest.raises(TypeError, match=r"candidates\[1\]"):
        closure([candidates[0], "bias", *candidates[2:]])
    empty = closure([c[:0] for c in candidates])
    assert empty.shape == (0,) and empty.dtype == torch.float32


def test_numpy_chunk_size_and_bool_refused():
    model = small_net()
    x, y = torch.randn(6, 5), torch.randint(0, 3, (6,))
    candidates = random_candidates(model, 5)
    torch.testing.assert_close(
        batched_closure(model, F.cross_entropy, x, y, chunk_size=np.int64(2))(candidates),
        batched_closure(model, F.cross_entropy, x, y)(candidates),
    )
    with pytest.raises(ValueError, match="chunk_size"):
        batched_closure(model, F.cross_entropy, x, y, chunk_size=True)


# --------------------------------------------------------------------------- shared weights, wrappers, vmap limits
def tied_net():
    """``m[2].weight = m[0].weight``: one tensor used by two layers."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 5), nn.Tanh(), nn.Linear(5, 5))
    model[2].weight = model[0].weight
    return model


class TwiceUsed(nn.Module):
    """One layer applied twice: its parameters are used at two places of the forward pass."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(5, 5)

    def forward(self, x):
        return self.layer(torch.tanh(self.layer(x)))


@pytest.mark.parametrize("make", [tied_net, TwiceUsed])
def test_tied_and_reused_parameters_get_one_candidate_at_every_use(make):
    model = make()
    assert len(list(model.parameters())) == (3 if make is tied_net else 2)
    x, y = torch.randn(6, 5), torch.randn(6, 5)
    candidates = random_candidates(model, 4)
    losses = batched_closure(model, F.mse_loss, x, y)(candidates)
    torch.testing.assert_close(losses, one_by_one(model, candidates, F.mse_loss, x, y))
    if make is tied_net:  # the second use really reads the candidate: the old value gives another loss
        w, b0, b2 = candidates
        untied = F.mse_loss(F.linear(torch.tanh(F.linear(x, w[0], b0[0])), model[2].weight, b2[0]), y)
        assert not torch.allclose(losses[0], untied)


def test_tied_weights_through_the_optimizer_match_loading_the_samples():
    model = tied_net()
    x, y = torch.randn(8, 5), torch.randn(8, 5)
    opt = MBDOptimizer(list(model.parameters())[::-1], num_samples=6, num_steps=3, seed=0)
    opt.step(batched_closure(model, F.mse_loss, x, y))
    torch.testing.assert_close(-opt.last_step.rewards[0], reference_losses(model, opt, F.mse_loss, x, y))


def test_parameters_sharing_memory_are_refused_by_name():
    class Views(nn.Module):
        def __init__(self):
            super().__init__()
            base = torch.randn(6)
            self.a = nn.Parameter(base[:4])
            self.b = nn.Parameter(base[2:])

        def forward(self, x):
            return x * self.a.sum() + self.b.sum()

    with pytest.raises(ValueError, match=r"'a' and 'b' are different tensors sharing memory"):
        batched_closure(Views(), F.mse_loss, torch.randn(3), torch.randn(3))


def test_disjoint_views_and_expanded_parameters_pass():
    class Halves(nn.Module):
        def __init__(self):
            super().__init__()
            base = torch.randn(8)
            self.a, self.b = nn.Parameter(base[:4]), nn.Parameter(base[4:])

        def forward(self, x):
            return x * self.a + self.b

    model = Halves()
    x, y = torch.randn(4), torch.randn(4)
    candidates = random_candidates(model, 3)
    losses = batched_closure(model, F.mse_loss, x, y)(candidates)
    for j in range(3):
        torch.testing.assert_close(losses[j], F.mse_loss(x * candidates[0][j] + candidates[1][j], y))


@pytest.mark.parametrize("wrap", ["lambda", "partial", "new list", "logging function"])
def test_a_wrapped_closure_keeps_the_optimizers_parameter_order(wrap):
    import functools

    model = twin_layer_net()
    w1, b1, w2, b2 = model.parameters()
    x, y = torch.randn(8, 4), torch.randn(8, 4)
    opt = MBDOptimizer([w2, b2, w1, b1], num_samples=6, num_steps=3, seed=0)  # not the model's order
    inner = batched_closure(model, F.mse_loss, x, y)
    seen = []

    def logging(candidates):
        losses = inner(candidates)
        seen.append(losses.mean())
        return losses

    closure = {
        "lambda": lambda c: inner(c),
        "partial": functools.partial(inner),
        "new list": lambda c: inner([t.clone() for t in c]),
        "logging function": logging,
    }[wrap]
    assert not hasattr(closure, "bind_params")
    opt.step(closure)
    torch.testing.assert_close(-opt.last_step.rewards[0], reference_losses(model, opt, F.mse_loss, x, y))


def test_bind_params_fixes_the_order_of_direct_calls():
    model = twin_layer_net()
    w1, b1, w2, b2 = model.parameters()
    x, y = torch.randn(8, 4), torch.randn(8, 4)
    closure = batched_closure(model, F.mse_loss, x, y)
    candidates = random_candidates(model, 3)  # in the model's order
    expected = closure(candidates)
    closure.bind_params([w2, b2, w1, b1])
    torch.testing.assert_close(closure([candidates[2], candidates[3], candidates[0], candidates[1]]), expected)
    with pytest.raises(ValueError, match="not a parameter of model"):
        closure.bind_params([w1, torch.zeros(4)])


def test_a_closure_over_two_models_needs_params_and_then_is_right():
    torch.manual_seed(0)
    first, second = nn.Linear(3, 3), nn.Linear(3, 3)
    x, y = torch.randn(5, 3), torch.randn(5, 3)
    opt = MBDOptimizer([first.weight, first.bias, second.weight, second.bias], num_samples=4, num_steps=2, seed=0)
    bare = batched_closure(first, F.mse_loss, x, y)
    with pytest.raises(ValueError, match="pass params="):
        opt.step(lambda c: bare(c[:2]) + bare(c[2:]))
    a = batched_closure(first, F.mse_loss, x, y, params=[first.weight, first.bias])
    b = batched_closure(second, F.mse_loss, x, y, params=[second.weight, second.bias])
    opt.step(lambda c: a(c[:2]) + b(c[2:]))
    samples = opt.last_step.samples[0]
    for j, row in enumerate(samples):
        w1, b1, w2, b2 = row[:9].reshape(3, 3), row[9:12], row[12:21].reshape(3, 3), row[21:]
        expected = F.mse_loss(F.linear(x, w1, b1), y) + F.mse_loss(F.linear(x, w2, b2), y)
        torch.testing.assert_close(-opt.last_step.rewards[0, j], expected)


def test_a_wrapped_closure_refuses_an_optimizer_tensor_the_model_does_not_have():
    model = twin_layer_net()
    closure = batched_closure(model, F.mse_loss, torch.randn(2, 4), torch.randn(2, 4))
    opt = MBDOptimizer([model[0].weight, torch.zeros(4, 4)], num_samples=4, seed=0)
    with pytest.raises(ValueError, match=r"shape \(4, 4\) that is not a parameter of model.*params="):
        opt.step(lambda c: closure(c))


class Branching(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(5, 3)

    def forward(self, x):
        h = self.linear(x)
        return h if h.sum() > 0 else -h


class Noisy(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(5, 3)

    def forward(self, x):
        return self.linear(x) + torch.randn(3)


class Masked(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(5, 3)

    def forward(self, x):
        h = self.linear(x)
        return h * h[h > 0].sum()


class Recurrent(nn.Module):
    def __init__(self, cell):
        super().__init__()
        self.rnn = cell(5, 3, batch_first=True)

    def forward(self, x):
        return self.rnn(x.unsqueeze(0))[0][0]


def item_loss(out, t):
    return F.cross_entropy(out, t) * out.abs().mean().item()


VMAP_LIMITS = {
    "dropout in training mode": (lambda: nn.Sequential(nn.Linear(5, 3), nn.Dropout(0.5)), F.cross_entropy,
                                 r"model\.1 \(Dropout in training mode\).*model\.eval\(\).*randomness="),
    "randn in forward": (Noisy, F.cross_entropy, r"the model \(Noisy\) draws random numbers.*randomness="),
    "random loss": (lambda: nn.Linear(5, 3), lambda o, t: F.cross_entropy(o, t) + torch.rand(()),
                    r"loss_fn draws random numbers"),
    ".item() in the loss": (lambda: nn.Linear(5, 3), item_loss, r"loss_fn calls \.item\(\).*vectorize=False"),
    "data-dependent if": (Branching, F.cross_entropy, r"the model \(Branching\) branches on a tensor.*torch\.where"),
    "boolean mask": (Masked, F.cross_entropy, r"the model \(Masked\) .*shape depends on the values"),
    "LSTM": (lambda: Recurrent(nn.LSTM), F.cross_entropy, r"model\.rnn \(LSTM\) .*recurrent.*vectorize=False"),
    "GRU": (lambda: Recurrent(nn.GRU), F.cross_entropy, r"model\.rnn \(GRU\) .*recurrent.*vectorize=False"),
    ".numpy() in the loss": (lambda: nn.Linear(5, 3), lambda o, t: F.cross_entropy(o, t) * float(o.numpy().mean()),
                             r"loss_fn reads a tensor's memory directly"),
}


@pytest.mark.parametrize("case", list(VMAP_LIMITS))
def test_every_vmap_limit_is_one_error_naming_the_module_and_what_to_do(case):
    make, loss_fn, match = VMAP_LIMITS[case]
    torch.manual_seed(0)
    model = make()
    x, y = torch.randn(4, 5), torch.randint(0, 3, (4,))
    closure = batched_closure(model, loss_fn, x, y)
    with pytest.raises(RuntimeError, match=match) as info:
        closure(random_candidates(model, 3))
    assert info.value.__cause__ is not None  # torch's own message stays attached


@pytest.mark.parametrize("case", ["LSTM", "GRU", ".item() in the loss", "data-dependent if", "boolean mask"])
def test_vectorize_false_evaluates_what_vmap_cannot_one_by_one(case):
    make, loss_fn, _ = VMAP_LIMITS[case]
    torch.manual_seed(0)
    model = make()
    x, y = torch.randn(4, 5), torch.randint(0, 3, (4,))
    candidates = random_candidates(model, 3)
    losses = batched_closure(model, loss_fn, x, y, vectorize=False)(candidates)
    torch.testing.assert_close(losses, one_by_one(model, candidates, loss_fn, x, y))


def test_vectorize_false_keeps_batchnorm_buffers_per_candidate():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 2))
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    candidates = random_candidates(model, 3)
    looped = batched_closure(model, F.cross_entropy, x, y, vectorize=False)(candidates)
    torch.testing.assert_close(looped, batched_closure(model, F.cross_entropy, x, y)(candidates))
    for k, v in model.named_buffers():
        assert torch.equal(v, buffers[k]), k


def test_randomness_same_compares_candidates_under_one_dropout_mask():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Dropout(0.5), nn.Linear(8, 3))
    x, y = torch.randn(4, 5), torch.randint(0, 3, (4,))
    same_params = [p.detach().expand(4, *p.shape).clone() for p in model.parameters()]
    same = batched_closure(model, F.cross_entropy, x, y, randomness="same")(same_params)
    different = batched_closure(model, F.cross_entropy, x, y, randomness="different")(same_params)
    assert torch.allclose(same, same[0].expand(4))  # one mask: equal candidates, equal losses
    assert len(set(different.tolist())) == 4  # a mask per candidate


def test_integer_inputs_to_a_float_model_are_refused_when_the_closure_is_built():
    model = small_net()
    with pytest.raises(TypeError, match=r"inputs\[0\] is an integer tensor \(torch\.int64\).*float32.*\.to\("):
        batched_closure(model, F.cross_entropy, torch.randint(0, 3, (4, 5)), torch.randint(0, 3, (4,)))


def test_integer_inputs_a_module_takes_pass():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(0), nn.Linear(12, 2))
    tokens, y = torch.tensor([1, 5, 9]), torch.tensor(1)
    candidates = random_candidates(model, 3)
    losses = batched_closure(model, F.cross_entropy, tokens, y)(candidates)
    torch.testing.assert_close(losses, one_by_one(model, candidates, F.cross_entropy, tokens, y))


@pytest.mark.parametrize("kwargs, match", [({"randomness": "never"}, "randomness"), ({"vectorize": 1}, "vectorize"),
                                           ({"vectorize": "no"}, "vectorize")])
def test_bad_randomness_and_vectorize(kwargs, match):
    with pytest.raises(ValueError, match=match):
        batched_closure(small_net(), F.cross_entropy, torch.randn(4, 5), torch.randint(0, 3, (4,)), **kwargs)


def test_numpy_bool_vectorize_is_a_bool():
    model = small_net()
    x, y = torch.randn(4, 5), torch.randint(0, 3, (4,))
    candidates = random_candidates(model, 2)
    torch.testing.assert_close(batched_closure(model, F.cross_entropy, x, y, vectorize=np.False_)(candidates),
                               batched_closure(model, F.cross_entropy, x, y)(candidates))


def test_shared_memory_matters_only_where_a_candidate_goes():
    class Views(nn.Module):
        def __init__(self):
            super().__init__()
            base = torch.randn(6)
            self.a, self.b = nn.Parameter(base[:4]), nn.Parameter(base[2:])
            self.c = nn.Parameter(torch.randn(4))

        def forward(self, x):
            return x * self.a.sum() + self.b.sum() + self.c

    model = Views()
    x, y = torch.randn(4), torch.randn(4)
    closure = batched_closure(model, F.mse_loss, x, y, params=[model.c])  # a and b keep their values: fine
    c = torch.randn(3, 4)
    for j, loss in enumerate(closure([c])):
        torch.testing.assert_close(loss, F.mse_loss(x * model.a.sum() + model.b.sum() + c[j], y).detach())
    with pytest.raises(ValueError, match=r"'a' and 'b'"):
        batched_closure(model, F.mse_loss, x, y, params=[model.b])


def test_other_errors_keep_their_type_and_message_and_name_the_module():
    model = small_net()
    closure = batched_closure(model, F.cross_entropy, torch.randn(4, 6), torch.randint(0, 3, (4,)))  # 6 != 5 features
    with pytest.raises(RuntimeError, match="Expected size for first two dimensions") as info:
        closure(random_candidates(model, 3))
    assert "batched_closure: raised in model.0 (Linear)" in info.value.__notes__


def test_integer_inputs_to_a_convolution_are_refused_and_other_build_failures_wait_for_the_call():
    conv = nn.Sequential(nn.Conv1d(2, 3, 3), nn.Flatten(), nn.Linear(6, 2))
    with pytest.raises(TypeError, match=r"inputs\[0\] is an integer tensor"):
        batched_closure(conv, F.cross_entropy, torch.randint(0, 3, (4, 2, 5)), torch.randint(0, 2, (4,)))
    # an integer input the forward pass fails on for another reason (a shape): reported at the call
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(5, 2))
    closure = batched_closure(model, F.cross_entropy, torch.tensor([1, 2]), torch.tensor([0, 1]))
    with pytest.raises(RuntimeError, match="Expected size for first two dimensions"):
        closure(random_candidates(model, 2))
