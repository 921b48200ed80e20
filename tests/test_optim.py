"""Optimizers: convergence on a quadratic and on Rosenbrock, one hand-computed step each,
per-replica hyperparameters, and dropping replicas from the state."""

import numpy as np
import pytest

from nnexp.engine import optim

SETTINGS = {  # (name, kwargs, lr) that converge on both problems
    "sgd": ({}, 1e-3),
    "sgd_momentum": ({"momentum": 0.9}, 2e-4),
    "nesterov": ({"momentum": 0.9, "nesterov": True}, 2e-4),
    "adam": ({}, 2e-2),
    "rmsprop": ({}, 2e-3),
    "adagrad": ({}, 2e-1),
}


def make(key):
    kwargs, lr = SETTINGS[key]
    return optim.make("sgd_momentum" if key == "nesterov" else key, **kwargs), lr


def minimise(opt, grad_fn, x0, lr, steps):
    params = np.array(x0, dtype=float)
    state = opt.init(params)
    lr_col = np.full((len(params), 1), lr)
    for _ in range(steps):
        updates, state = opt.update(grad_fn(params), state, params, lr_col)
        params -= updates
    return params


def rosenbrock_grad(p):
    x, y = p[:, :1], p[:, 1:]
    return np.hstack([-2 * (1 - x) - 400 * x * (y - x**2), 200 * (y - x**2)])


@pytest.mark.parametrize("key", sorted(SETTINGS))
def test_converges_on_a_quadratic(key):
    scales = np.array([[1.0, 10.0, 100.0]])  # f = sum(s * w^2) / 2, ill-conditioned
    opt, lr = make(key)
    w = minimise(opt, lambda p: scales * p, [[1.0, -2.0, 3.0]], lr, 20000)
    assert np.abs(w).max() < 1e-3


@pytest.mark.parametrize("key", sorted(SETTINGS))
def test_converges_on_rosenbrock(key):
    opt, lr = make(key)
    w = minimise(opt, rosenbrock_grad, [[-1.2, 1.0]], lr, 60000)
    assert np.abs(w - 1.0).max() < 2e-2, w


G = np.array([[0.5, -2.0]])
W = np.array([[1.0, 1.0]])
LR = np.array([[0.1]])


def two_steps(opt):
    """Apply the same gradient twice; return the two updates."""
    state = opt.init(W)
    u1, state = opt.update(G, state, W, LR)
    u2, state = opt.update(G, state, W, LR)
    return u1, u2


def test_sgd_step_by_hand():
    u1, u2 = two_steps(optim.make("sgd"))
    assert np.allclose(u1, [[0.05, -0.2]]) and np.allclose(u2, u1)


def test_momentum_is_the_seed_rule():
    # v = mu v + lr g; w -= v
    u1, u2 = two_steps(optim.make("sgd_momentum", momentum=0.9))
    assert np.allclose(u1, 0.1 * G)
    assert np.allclose(u2, 0.9 * 0.1 * G + 0.1 * G)


def test_nesterov_step_by_hand():
    # v1 = lr g; update = mu v1 + lr g
    u1, _ = two_steps(optim.make("sgd_momentum", momentum=0.9, nesterov=True))
    assert np.allclose(u1, 0.9 * 0.1 * G + 0.1 * G)


def test_adam_step_by_hand():
    # first step: m_hat = g, s_hat = g^2, update = lr * g / (|g| + eps)
    u1, _ = two_steps(optim.make("adam", eps=1e-8))
    assert np.allclose(u1, 0.1 * G / (np.abs(G) + 1e-8))


def test_rmsprop_step_by_hand():
    u1, _ = two_steps(optim.make("rmsprop", rho=0.9, eps=1e-8))
    assert np.allclose(u1, 0.1 * G / (np.sqrt(0.1 * G**2) + 1e-8))


def test_adagrad_step_by_hand():
    u1, u2 = two_steps(optim.make("adagrad", eps=1e-8))
    assert np.allclose(u1, 0.1 * G / (np.abs(G) + 1e-8))
    assert np.allclose(u2, 0.1 * G / (np.sqrt(2 * G**2) + 1e-8))


def test_l1_and_l2_act_on_weights_only():
    mask = np.array([1.0, 0.0])  # second entry is a bias
    opt = optim.make("sgd", l1=0.01, l2=0.2, decay_mask=mask)
    u, _ = opt.update(G, opt.init(W), W, LR)
    assert np.allclose(u, 0.1 * (G + np.array([[0.01 * 1.0 + 0.2 * 1.0, 0.0]])))


def test_penalties_without_mask_are_refused():
    with pytest.raises(ValueError, match="decay_mask"):
        optim.make("adam", l2=0.1)


def test_per_replica_hyperparameters_match_separate_runs():
    g = np.random.default_rng(0).standard_normal((3, 4))
    w = np.ones((3, 4))
    lr = np.array([[0.1], [0.2], [0.3]])
    mus = [0.0, 0.5, 0.9]
    opt = optim.make("sgd_momentum", momentum=mus)
    state = opt.init(w)
    for _ in range(3):
        u, state = opt.update(g, state, w, lr)
    for r, mu in enumerate(mus):
        single = optim.make("sgd_momentum", momentum=mu)
        s = single.init(w[r : r + 1])
        for _ in range(3):
            ur, s = single.update(g[r : r + 1], s, w[r : r + 1], lr[r : r + 1])
        assert np.array_equal(u[r], ur[0])


def test_take_rows_keeps_each_replicas_state():
    opt = optim.make("adam", beta1=[0.8, 0.9, 0.95])
    w = np.ones((3, 2))
    state = opt.init(w)
    _, state = opt.update(np.ones((3, 2)), state, w, np.full((3, 1), 0.1))
    kept = optim.take_rows(state, np.array([2, 0]), 3)
    assert kept[0]["b1"].ravel().tolist() == [0.95, 0.8]
    assert kept[0]["m"].shape == (2, 2) and kept[0]["t"] == 1


def test_unknown_optimizer_names_close_matches():
    with pytest.raises(ValueError, match="optimizer.name.*Did you mean 'adam'"):
        optim.make("adma")
