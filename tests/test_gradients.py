"""Central-difference gradient checks (float64, relative error < 1e-6) for every layer, activation,
loss and penalty, on a single replica (unbatched) and on R = 3 replicas."""

import numpy as np
import pytest

from nnexp.engine import activations, losses
from nnexp.engine.layers import Activation, BatchNorm, Dense, Dropout
from nnexp.engine.model import MLPSpec
from nnexp.engine.network import Network

EPS = 1e-6
TOL = 1e-6


def rel_err(a, b):
    """||a - b|| / (||a|| + ||b||): the usual gradient-check measure, robust to entries that are ~0."""
    return np.linalg.norm(a - b) / max(1e-12, np.linalg.norm(a) + np.linalg.norm(b))


def numeric_grad(f, x):
    """Central differences of the scalar f() with respect to every entry of x (changed in place)."""
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + EPS
        up = f()
        x[i] = old - EPS
        down = f()
        x[i] = old
        g[i] = (up - down) / (2 * EPS)
    return g


def layer_net(layer, R):
    return Network([layer], init_seeds=list(range(R)), batched=R > 1)


def check_layer(layer, R, n_in, batch=5, train=True, x_scale=1.0, seed=0, shared=False):
    """`shared`: one (n_in, batch) input for all R replicas (d f / d x is then the sum over replicas)."""
    rng = np.random.default_rng(seed)
    net = layer_net(layer, R)
    net.flat += 0.1 * rng.standard_normal(net.flat.shape)  # move gamma/beta/bias off their defaults
    shape = (R, n_in, batch) if R > 1 and not shared else (n_in, batch)
    x = x_scale * rng.standard_normal(shape)
    out = layer.forward(x, train)
    g_out = rng.standard_normal(out.shape)

    def f():
        return float((layer.forward(x, train) * g_out).sum())

    layer.forward(x, train)
    dx = layer.backward(g_out)
    assert rel_err(dx.sum(axis=0) if shared else dx, numeric_grad(f, x)) < TOL
    if net.n_params:
        analytic = net.grad.copy()
        assert rel_err(analytic, numeric_grad(f, net.flat)) < TOL


@pytest.mark.parametrize("R", [1, 3])
def test_dense(R):
    check_layer(Dense(4, 3), R, n_in=4)


def test_dense_with_an_input_shared_by_the_replicas():
    """Replicas that share a seed share each mini-batch: the first layer takes one (n_in, batch) input."""
    check_layer(Dense(4, 3), 3, n_in=4, shared=True)
    layer, rng = Dense(4, 3), np.random.default_rng(1)
    layer_net(layer, 3)
    x = rng.standard_normal((4, 7))
    np.testing.assert_array_equal(layer.forward(x), layer.forward(np.broadcast_to(x, (3, 4, 7)).copy()))


@pytest.mark.parametrize("R", [1, 3])
@pytest.mark.parametrize("name", sorted(activations.ACTIVATIONS))
def test_activation(name, R):
    # inputs kept away from the kinks of relu / leaky_relu, where the derivative is not defined
    rng = np.random.default_rng(1)
    layer = Activation(name, alpha=0.05)
    x = rng.uniform(0.1, 2.0, (R, 3, 4)) * rng.choice([-1.0, 1.0], (R, 3, 4))
    x = x if R > 1 else x[0]
    g_out = rng.standard_normal(x.shape)
    layer.forward(x, True)
    dx = layer.backward(g_out)
    assert rel_err(dx, numeric_grad(lambda: float((layer.forward(x, True) * g_out).sum()), x)) < TOL


@pytest.mark.parametrize("R", [1, 3])
def test_batch_norm_training_mode(R):
    check_layer(BatchNorm(3), R, n_in=3, batch=6, x_scale=2.0)


@pytest.mark.parametrize("R", [1, 3])
def test_dropout_with_fixed_mask(R):
    rng = np.random.default_rng(2)
    layer = Dropout(0.5)
    layer_net(layer, R)
    shape = (R, 3, 5) if R > 1 else (3, 5)
    layer.fixed_mask = (rng.random(shape) >= 0.5) / 0.5
    check_layer(layer, R, n_in=3)


@pytest.mark.parametrize("R", [1, 3])
def test_mse_loss(R):
    rng = np.random.default_rng(3)
    shape = (R, 1, 7) if R > 1 else (1, 7)
    pred, y = rng.random(shape), rng.random(shape)
    value, grad = losses.mse(pred, y)
    assert np.allclose(value, ((pred - y) ** 2).mean(axis=(-2, -1)))
    assert rel_err(grad, numeric_grad(lambda: float(losses.mse(pred, y)[0].sum()), pred)) < TOL
    assert np.allclose(losses.mse_grad(pred, y), grad)


@pytest.mark.parametrize("R", [1, 3])
@pytest.mark.parametrize("penalty", [losses.l1_penalty, losses.l2_penalty])
def test_penalties(penalty, R):
    rng = np.random.default_rng(4)
    w = rng.uniform(0.1, 1.0, (R, 10)) * rng.choice([-1.0, 1.0], (R, 10))
    mask = (np.arange(10) % 3 != 0).astype(float)  # some entries are biases: no penalty
    strength = np.linspace(0.1, 0.3, R)
    _, grad = penalty(w, strength, mask)
    assert rel_err(grad, numeric_grad(lambda: float(penalty(w, strength, mask)[0].sum()), w)) < TOL
    assert np.all(grad[:, mask == 0] == 0)


@pytest.mark.parametrize("R", [1, 3])
@pytest.mark.parametrize(
    "spec",
    [
        MLPSpec(),
        MLPSpec(sizes=(4, 8, 6, 4, 1), hidden_activation="tanh", output_activation="identity", init="he_normal"),
        MLPSpec(sizes=(3, 5, 2), hidden_activation="leaky_relu", batch_norm=True),
    ],
    ids=["seed_baseline", "deeper_tanh", "batch_norm"],
)
def test_whole_network_against_mse(spec, R):
    rng = np.random.default_rng(5)
    net = spec.build(list(range(R)), batched=R > 1)
    shape = (R, spec.sizes[0], 9) if R > 1 else (spec.sizes[0], 9)
    x, y = rng.standard_normal(shape), rng.random(shape[:-2] + (1, 9))

    def f():
        return float(losses.mse(net.forward(x, True), y)[0].sum())

    net.backward(losses.mse_grad(net.forward(x, True), y))
    assert rel_err(net.grad, numeric_grad(f, net.flat)) < TOL


@pytest.mark.parametrize("name", sorted(activations.ACTIVATIONS))
def test_in_place_activations_give_the_same_bits(name):
    rng = np.random.default_rng(2)
    z, dout = rng.standard_normal((3, 4, 5)), rng.standard_normal((3, 4, 5))
    out_of_place, in_place = Activation(name, alpha=0.05), Activation(name, alpha=0.05, inplace=True)
    a = out_of_place.forward(z.copy())
    np.testing.assert_array_equal(in_place.forward(z.copy()), a)
    np.testing.assert_array_equal(in_place.backward(dout.copy()), out_of_place.backward(dout.copy()))
