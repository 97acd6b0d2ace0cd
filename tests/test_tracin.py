"""The bounded TracIn sketch (compile/tracin.py): inner products kept, no overflow, linear."""

import numpy as np

from s2build.compile import tracin


def test_sketch_keeps_the_influence_ranking_of_wide_layers():
    rng = np.random.default_rng(0)
    n, k, h = 400, 40, 512                                   # both sides wider than the budget
    base = rng.random(h)
    a = np.maximum(base + rng.normal(0, 0.7, (n, h)), 0).astype(np.float32)   # ReLU-like
    p = np.exp(rng.normal(0, 2, (n, k)))
    dz = p / p.sum(axis=1, keepdims=True)
    dz[np.arange(n), rng.integers(0, k, n)] -= 1             # softmax - onehot(label)
    dz = dz.astype(np.float32)
    exact = (dz @ dz[0]) * (a @ a[0])
    s, q = tracin.basis(dz, tracin.D_OUT), tracin.basis(a, tracin.D_IN)
    assert s.shape == (k, tracin.D_OUT) and q.shape == (h, tracin.D_IN)
    gz, ga = tracin.sketch(dz, s), tracin.sketch(a, q)
    assert np.corrcoef(a @ a[0], ga @ ga[0])[0, 1] > 0.8     # a seeded Gaussian one: 0.36
    approx = (gz @ gz[0]) * (ga @ ga[0])
    assert np.corrcoef(exact[1:], approx[1:])[0, 1] > 0.5
    assert np.array_equal(tracin.basis(a, tracin.D_IN), q)  # deterministic


def test_narrow_sides_are_exact_and_the_sketch_is_linear():
    rng = np.random.default_rng(1)
    narrow = rng.normal(size=(5, 10)).astype(np.float32)
    assert np.array_equal(tracin.sketch(narrow, tracin.basis(narrow, tracin.D_OUT)), narrow)
    dz = rng.normal(size=(50, 40)).astype(np.float32)
    s = tracin.basis(dz, tracin.D_OUT)
    y, pred = 3, 7
    moved = dz.copy()
    moved[:, y] += 1
    moved[:, pred] -= 1                                      # the gradient at another class
    assert np.allclose(tracin.sketch(moved, s), tracin.sketch(dz, s) + s[y] - s[pred], atol=1e-5)


def test_encode_never_overflows_and_round_trips():
    x = np.array([[[1e9, -3e8], [1.0, 0.0]], [[1e-9, 2e-9], [0.0, 0.0]]], np.float32)
    stored, scale = tracin.encode(x)
    assert stored.dtype == np.float16 and np.isfinite(stored).all()
    for c in range(2):
        back = tracin.decode(stored, scale, c)
        assert np.allclose(back, x[c], rtol=1e-3, atol=float(np.abs(x[c]).max()) * 1e-4)
    zeros, sz = tracin.encode(np.zeros((1, 3, 2), np.float32))
    assert np.isfinite(sz).all() and not zeros.any()
