"""Tests for the lambda estimator against closed forms and the naive reference."""

import jax
import numpy as np
import pytest

from conftest import rademacher_lambda
from kopaths.normalization import normalize
from kopaths.separation import (
    LambdaEstimate,
    covariance_spectrum,
    estimate_lambda,
    gaussian_lambda,
    linear_mmse,
    snr_grid,
    validate_table,
)
from kopaths.separation import PRUNE_MARGIN, _prune_cutoff, locality_order

SNR = np.array([0.0, 0.25, 0.5, 1.0, 2.0, 4.0])


def test_gaussian_data_gives_s2_over_1_plus_s2():
    x = np.random.default_rng(0).standard_normal((20000, 1))
    x, _ = normalize(x)
    est = estimate_lambda(x, SNR, key=jax.random.key(1), num_noise=4096)
    err = np.abs(est.lam - np.asarray(gaussian_lambda(SNR)))
    # Monte Carlo error plus the finite-sample bias of 20k points at snr <= 4.
    assert np.all(err <= 4 * est.stderr + 5e-3), (est.lam, est.stderr)
    assert abs(est.lam[0]) < 1e-6  # centred data: lambda(0) = ||mean||^2 = 0


def test_zero_snr_is_exact_and_continues_the_sampled_values():
    # Uncentred data: at s = 0 the posterior mean is the data mean, MMSE/d = (E||x||^2 - ||E x||^2)/d.
    x = (np.random.default_rng(6).standard_normal((3000, 8)) * 0.9 + 0.3).astype(np.float32)
    est = estimate_lambda(x, np.array([0.0, 1e-3, 0.5]), key=jax.random.key(7), num_noise=512, check=False)
    x64 = x.astype(np.float64)
    want = (np.mean(np.sum(x64**2, 1)) - np.sum(x64.mean(0) ** 2)) / 8
    assert est.one_minus_lam[0] == pytest.approx(want, rel=1e-6) and est.stderr[0] == 0.0
    assert abs(est.one_minus_lam[1] - want) < 1e-3 * want + 4 * est.stderr[1]


def test_two_point_data_matches_quadrature():
    x = np.tile(np.array([[1.0], [-1.0]]), (50, 1))
    est = estimate_lambda(x, SNR, key=jax.random.key(2), num_noise=8192)
    want = rademacher_lambda(SNR)
    assert np.all(np.abs(est.lam - want) <= 4 * est.stderr + 1e-6), (est.lam, want)


def test_well_separated_data_has_lambda_near_one_and_zero_error():
    x = np.sqrt(64.0) * np.eye(64)[:8]  # 8 orthogonal points, ||x||^2 / d = 1
    x = np.concatenate([x, -x])
    est = estimate_lambda(x, np.array([3.0, 10.0]), key=jax.random.key(3), num_noise=512, check=False)
    np.testing.assert_allclose(est.lam, 1.0, atol=1e-6)
    np.testing.assert_allclose(est.stderr, 0.0, atol=1e-6)


def test_lambda_is_above_gaussian_bound_and_below_one():
    x, _ = normalize(np.random.default_rng(4).uniform(size=(3000, 16)))
    s = snr_grid(24)
    est = estimate_lambda(x, s, key=jax.random.key(5), num_noise=1024)
    assert np.all(est.lam <= 1 + 1e-9)
    assert np.all(est.lam >= np.asarray(gaussian_lambda(s)) - 4 * est.stderr - 1e-3)


def test_shared_noise_equals_naive_and_is_chunk_invariant():
    x, _ = normalize(np.random.default_rng(6).standard_normal((1000, 12)))
    s = snr_grid(16)
    key = jax.random.key(7)
    ref = estimate_lambda(x, s, key=key, num_noise=300)
    naive = estimate_lambda(x, s, key=key, num_noise=300, method="naive")
    chunked = estimate_lambda(x, s, key=key, num_noise=300, noise_chunk=64, data_chunk=128)
    np.testing.assert_allclose(naive.one_minus_lam, ref.one_minus_lam, atol=2e-5)
    np.testing.assert_allclose(chunked.one_minus_lam, ref.one_minus_lam, atol=2e-5)
    again = estimate_lambda(x, s, key=key, num_noise=300)
    np.testing.assert_array_equal(again.one_minus_lam, ref.one_minus_lam)  # deterministic


def test_pruning_changes_nothing_on_paired_data_with_duplicates():
    # Far-apart points with a close partner each (and some exact duplicates): at high snr only the
    # partner and the duplicates keep weight, so most blocks are skipped and the rest must not be.
    rng = np.random.default_rng(11)
    x = rng.standard_normal((1200, 32))
    x = np.concatenate([x, x[:40] + 0.35 * rng.standard_normal((40, 32)), x[40:50]])
    x, _ = normalize(x)
    s = snr_grid(64)
    kw = dict(key=jax.random.key(12), num_noise=400, noise_chunk=64, data_chunk=128)
    pruned = estimate_lambda(x, s, **kw)
    full = estimate_lambda(x, s, prune=False, **kw)
    unordered = estimate_lambda(x, s, order=False, **kw)
    for est in (pruned, unordered):
        np.testing.assert_allclose(est.one_minus_lam, full.one_minus_lam, rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(est.stderr, full.stderr, rtol=1e-4, atol=1e-9)
    assert full.one_minus_lam[s > 2].max() > 1e-6  # the partners matter where most blocks are skipped


def test_prune_cutoff_bounds_every_entry():
    rng = np.random.default_rng(13)
    xi, xn = rng.standard_normal((16, 20)), rng.standard_normal((24, 20))
    xn[:3] = xi[:3] + 0.3 * rng.standard_normal((3, 20))  # near neighbours set the cut-off
    eps = rng.standard_normal((16, 20))
    gram, noise = xi @ xn.T, eps @ xn.T
    sqn_i, sqn_n, noise_src = (xi**2).sum(1), (xn**2).sum(1), (eps * xi).sum(1)
    keep = np.ones((16, 24), bool)
    cut = float(_prune_cutoff(*(np.float32(v) for v in (gram, noise, sqn_i, noise_src, sqn_n)), keep, PRUNE_MARGIN))
    assert np.isfinite(cut)
    dist = ((xi[:, None] - xn[None]) ** 2).sum(-1)
    delta = noise - noise_src[:, None]
    for snr in np.linspace(cut, 50 * cut, 200)[1:]:
        assert np.all(-snr**2 * dist / 2 + snr * delta < -PRUNE_MARGIN)
    # ... and it is not vacuous: just below it some entry is still within the margin.
    below = 0.9 * cut
    assert np.any(-below**2 * dist / 2 + below * delta > -PRUNE_MARGIN - 5)


def test_memmap_input_streams(tmp_path):
    x, _ = normalize(np.random.default_rng(8).standard_normal((500, 6)))
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=x.shape)
    mm[:] = x
    mm.flush()
    a = estimate_lambda(np.load(tmp_path / "x.npy", mmap_mode="r"), SNR, key=jax.random.key(0), num_noise=64, data_chunk=100)
    b = estimate_lambda(x, SNR, key=jax.random.key(0), num_noise=64)
    np.testing.assert_allclose(a.one_minus_lam, b.one_minus_lam, atol=1e-5)


@pytest.mark.parametrize(
    "data, match",
    [
        (np.full((10, 3), np.nan), "NaN"),
        (np.random.default_rng(0).standard_normal((10, 3)) * 5 + 3, "not normalised"),
        (np.ones((1, 3)), "at least 2"),
    ],
)
def test_bad_input_errors(data, match):
    with pytest.raises(ValueError, match=match):
        estimate_lambda(data, SNR, key=jax.random.key(0), num_noise=16)


def test_bad_snr_grid():
    x, _ = normalize(np.random.default_rng(0).standard_normal((10, 3)))
    with pytest.raises(ValueError, match="snr"):
        estimate_lambda(x, np.array([-1.0, 1.0]), key=jax.random.key(0), num_noise=16)


def test_table_roundtrip_and_validation(tmp_path):
    x, _ = normalize(np.random.default_rng(0).standard_normal((200, 3)))
    est = estimate_lambda(x, snr_grid(8), key=jax.random.key(0), num_noise=64)
    monotone = LambdaEstimate(est.snr, np.sort(est.one_minus_lam)[::-1], est.stderr, 200, 64, 3)
    monotone.save(tmp_path / "lam.json")
    back = LambdaEstimate.load(tmp_path / "lam.json")
    np.testing.assert_array_equal(back.one_minus_lam, monotone.one_minus_lam)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        LambdaEstimate.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="not monotone"):
        validate_table([0.0, 1.0, 2.0], [0.0, 0.6, 0.5])
    with pytest.raises(ValueError, match="NaN"):
        validate_table([0.0, 1.0], [0.0, np.nan])


def test_raw_estimates_reload_but_gross_violations_are_rejected(tmp_path):
    snr = np.array([0.0, 1.0, 2.0])
    noisy = LambdaEstimate(snr, np.array([1.0, 0.30, 0.3002]), np.array([0.0, 1e-3, 1e-3]), 10, 10, 2)
    noisy.save(tmp_path / "raw.json")  # non-monotone by 0.2 standard errors: a legitimate raw estimate
    np.testing.assert_array_equal(LambdaEstimate.load(tmp_path / "raw.json").one_minus_lam, noisy.one_minus_lam)
    bad = LambdaEstimate(snr, np.array([1.0, 0.30, 0.5]), np.array([0.0, 1e-3, 1e-3]), 10, 10, 2)
    bad.save(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="not monotone"):
        LambdaEstimate.load(tmp_path / "bad.json")


def test_sharded_over_four_devices_matches_one(tmp_path):
    """The k axis is split over 4 simulated CPU devices; the estimate must not change."""
    import json
    import os
    import subprocess
    import sys

    x, _ = normalize(np.random.default_rng(9).standard_normal((400, 5)))
    np.save(tmp_path / "x.npy", x)
    code = (
        "import json, sys, jax, numpy as np; from kopaths.separation import estimate_lambda; "
        "x = np.load(sys.argv[1]); "
        "e = estimate_lambda(x, np.array([0.5, 1.0, 3.0]), key=jax.random.key(0), num_noise=96, noise_chunk=32); "
        "print(json.dumps({'n': jax.device_count(), 'v': e.one_minus_lam.tolist()}))"
    )
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.npy")], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["n"] == 4
    one = estimate_lambda(x, np.array([0.5, 1.0, 3.0]), key=jax.random.key(0), num_noise=96, noise_chunk=32)
    np.testing.assert_allclose(result["v"], one.one_minus_lam, atol=1e-6)


def _anisotropic_gaussian(n=20000, d=8, seed=0):
    rng = np.random.default_rng(seed)
    scales = np.geomspace(3.0, 0.1, d)
    return normalize(rng.standard_normal((n, d)) * scales)[0]


def test_covariance_spectrum_exact_and_streamed():
    x = _anisotropic_gaussian(n=3000, d=24)
    want = np.sort(np.linalg.eigvalsh(np.cov(x, rowvar=False, bias=True)))[::-1]
    np.testing.assert_allclose(covariance_spectrum(x), want, rtol=1e-5, atol=1e-7)
    # the streamed top-k path keeps the trace, interlaces below the truth and gives a looser (still valid) bound
    approx = covariance_spectrum(x, max_exact_dim=4, rank=6, key=jax.random.key(0))
    assert approx.size == want.size and abs(approx.sum() - want.sum()) < 1e-6 * want.sum()
    assert np.all(approx[:6] <= want[:6] + 1e-6) and np.all(approx[:3] >= 0.9 * want[:3])
    s = snr_grid(32)
    assert np.all(linear_mmse(s, approx) >= linear_mmse(s, want) - 1e-9)


def test_anisotropic_gaussian_lambda_is_the_linear_mmse_bound():
    x = _anisotropic_gaussian()
    s = np.array([0.0, 0.05, 0.2, 0.5, 1.0])
    est = estimate_lambda(x, s, key=jax.random.key(1), num_noise=4096)
    want = np.asarray(gaussian_lambda(s, est.cov_eigenvalues))
    assert np.all(np.abs(est.lam - want) <= 4 * est.stderr + 3e-3), (est.lam, want)
    # far tighter than the isotropic bound s^2/(1+s^2), and exact to second order: lambda ~ m2 s^2
    assert want[2] > 2 * float(gaussian_lambda(0.2))
    small = gaussian_lambda(np.array([0.0, 1e-3]), est.cov_eigenvalues)  # minus the float32 round-off at 0
    np.testing.assert_allclose(float(small[1] - small[0]), est.m2 * 1e-6, rtol=1e-3)
    assert est.m2 == pytest.approx(np.sum(est.cov_eigenvalues**2) / x.shape[1])


def test_estimate_roundtrip_keeps_spectrum(tmp_path):
    x = _anisotropic_gaussian(n=500, d=6)
    est = estimate_lambda(x, snr_grid(8), key=jax.random.key(2), num_noise=64)
    est.save(tmp_path / "lam.json")
    back = LambdaEstimate.load(tmp_path / "lam.json")
    np.testing.assert_allclose(back.cov_eigenvalues, est.cov_eigenvalues)
    np.testing.assert_allclose(back.mmse_bound(), est.mmse_bound())
    d = est.to_dict()
    d["cov_eigenvalues"] = [-1.0] * 3
    with pytest.raises(ValueError, match="cov_eigenvalues"):
        LambdaEstimate.from_dict(d)


def test_locality_order_is_a_permutation_that_groups_clusters():
    # 12 well-separated clusters of 100 points, shuffled: chunks of the order hold few clusters.
    rng = np.random.default_rng(21)
    centres = 6.0 * rng.standard_normal((12, 40))
    labels = rng.permutation(np.repeat(np.arange(12), 100))
    x = (centres[labels] + rng.standard_normal((1200, 40))).astype(np.float32)
    order = locality_order(x, key=jax.random.key(0), leaf=100)
    np.testing.assert_array_equal(np.sort(order), np.arange(1200))
    per_chunk = [len(np.unique(labels[order[lo : lo + 100]])) for lo in range(0, 1200, 100)]
    shuffled = [len(np.unique(labels[lo : lo + 100])) for lo in range(0, 1200, 100)]
    assert np.mean(per_chunk) <= 4.0 < 10.0 <= np.mean(shuffled)
    np.testing.assert_array_equal(locality_order(x[:50], key=jax.random.key(0), leaf=100), np.arange(50))
    with pytest.raises(ValueError, match="shape"):
        locality_order(x.reshape(1200, 4, 10), key=jax.random.key(0), leaf=100)
