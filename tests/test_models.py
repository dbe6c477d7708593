"""Shapes, parameter counts and basic behaviour of the velocity models."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kopaths.models import MLP, UNet, build_model, count_params
from jax import lax

from kopaths.models import layers
from kopaths.models.layers import attention, convolution, timestep_embedding
from kopaths.models.unet import GroupNorm

TINY_UNET = dict(name="unet", model_channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(2,),
                 num_heads=2, dropout=0.1)


def _init(model, x):
    return jax.jit(model.init)(jax.random.key(0), x, jnp.zeros((x.shape[0],)))["params"]


def test_timestep_embedding_shape_and_values():
    emb = timestep_embedding(jnp.array([0.0, 1.0, 2.5]), 7)
    assert emb.shape == (3, 7)
    np.testing.assert_allclose(emb[0], [1, 1, 1, 0, 0, 0, 0], atol=1e-7)
    np.testing.assert_allclose(emb[2, 0], np.cos(2.5), rtol=1e-6)


@pytest.fixture(scope="module")
def unet():
    """One tiny 3-channel U-Net, its parameters and a shared jitted apply (compiled once per mode)."""
    model = build_model(TINY_UNET)
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
    return model, _init(model, x), jax.jit(model.apply, static_argnames="train"), x


def test_unet_output_shape_and_zero_init(unet):
    model, params, apply, x = unet
    out = apply({"params": params}, x, jnp.full((2,), 0.3))
    assert out.shape == x.shape and out.dtype == jnp.float32
    np.testing.assert_array_equal(out, 0.0)  # ADM zero-initialises every residual branch's last layer


def test_unet_param_count_matches_adm_formula(unet):
    # Hand count for model_channels=8, mult=(1, 2), one res block, attention at ds=2, scale-shift norm.
    def conv(i, o, k=3):
        return i * o * k * k + o

    def dense(i, o):
        return i * o + o

    def norm(c):
        return 2 * c

    emb = 32

    def res(i, o):
        skip = conv(i, o, 1) if i != o else 0
        return norm(i) + conv(i, o) + dense(emb, 2 * o) + norm(o) + conv(o, o) + skip

    def attn(c):
        return norm(c) + dense(c, 3 * c) + dense(c, c)

    expected = (
        dense(8, emb) + dense(emb, emb) + conv(3, 8)
        + res(8, 8) + conv(8, 8) + res(8, 16) + attn(16)  # down path
        + res(16, 16) + attn(16) + res(16, 16)  # middle
        + res(32, 16) + attn(16) + res(24, 16) + attn(16) + conv(16, 16)  # up, level 1
        + res(24, 8) + res(16, 8)  # up, level 0
        + norm(8) + conv(8, 3)
    )
    assert count_params(unet[1]) == expected


def test_unet_depends_on_time_and_input(unet):
    model, params, apply, x = unet
    rng = np.random.default_rng(3)
    params = jax.tree.map(lambda p: np.asarray(p) + 0.05 * rng.standard_normal(p.shape, np.float32), params)
    a = apply({"params": params}, x, jnp.zeros(2))
    b = apply({"params": params}, x, jnp.ones(2))
    c = apply({"params": params}, np.asarray(x) * 2, jnp.zeros(2))
    assert float(jnp.abs(a - b).max()) > 1e-4 and float(jnp.abs(a - c).max()) > 1e-4


def test_unet_dropout_only_in_train_mode(unet):
    model, params, apply, x = unet
    params = jax.tree.map(lambda p: np.asarray(p) + np.float32(0.05), params)
    t = jnp.full((2,), 0.5)
    np.testing.assert_array_equal(apply({"params": params}, x, t), apply({"params": params}, x, t))
    d1 = apply({"params": params}, x, t, train=True, rngs={"dropout": jax.random.key(0)})
    d2 = apply({"params": params}, x, t, train=True, rngs={"dropout": jax.random.key(1)})
    assert float(jnp.abs(d1 - d2).max()) > 0


def test_unet_rejects_indivisible_resolution():
    model = build_model(dict(TINY_UNET, channel_mult=(1, 2, 2)))
    with pytest.raises(ValueError, match="divisible by 4"):
        model.init(jax.random.key(0), jnp.zeros((1, 6, 6, 1)), jnp.zeros((1,)))


def test_mlp_shape_and_param_count():
    model = build_model(dict(name="mlp", hidden_sizes=(16, 16), time_embed_dim=8))
    assert isinstance(model, MLP)
    x = jnp.ones((5, 2))
    params = model.init(jax.random.key(0), x, jnp.zeros((5,)))["params"]
    expected = (8 * 8 + 8) + (2 * 16 + 16) + (8 * 16 + 16) + (16 * 16 + 16) + (8 * 16 + 16) + (16 * 2 + 2)
    assert count_params(params) == expected
    assert model.apply({"params": params}, x, jnp.full((5,), 0.1)).shape == (5, 2)


def test_build_model_errors():
    with pytest.raises(ValueError, match="Unknown model name"):
        build_model(dict(name="resnet"))
    with pytest.raises(ValueError, match="channels_typo"):
        build_model(dict(name="unet", channels_typo=3))
    assert isinstance(build_model(dict(name="unet", channel_mult=[1, 2], dtype="bfloat16")), UNet)


@pytest.mark.parametrize("channels,max_groups", [(8, 32), (24, 8), (12, 32), (6, 1)])
def test_group_norm_matches_flax_in_values_and_gradients(channels, max_groups):
    import flax.linen as nn  # noqa: PLC0415

    kx, ks, kb, kp = jax.random.split(jax.random.key(channels), 4)
    x = 1.0 + 2.0 * jax.random.normal(kx, (3, 5, 4, channels))
    params = {"params": {"GroupNorm_0": {"scale": 1.0 + jax.random.normal(ks, (channels,)),
                                         "bias": jax.random.normal(kb, (channels,))}}}
    probe = jax.random.normal(kp, x.shape)
    ours = GroupNorm(max_groups)
    groups = int(np.gcd(channels, max_groups))
    flax_gn = lambda p, x: nn.GroupNorm(num_groups=groups, epsilon=1e-5).apply(  # noqa: E731
        {"params": p["params"]["GroupNorm_0"]}, x)
    assert jax.tree.structure(ours.init(jax.random.key(0), x)) == jax.tree.structure(params)
    np.testing.assert_allclose(ours.apply(params, x), flax_gn(params, x), atol=2e-5)
    loss = lambda fn: lambda p, x: jnp.sum(jnp.tanh(fn(p, x)) * probe)  # noqa: E731
    grads = jax.grad(loss(ours.apply), argnums=(0, 1))(params, x)
    ref = jax.grad(loss(flax_gn), argnums=(0, 1))(params, x)
    for g, g_ref in zip(jax.tree.leaves(grads), jax.tree.leaves(ref)):
        np.testing.assert_allclose(g, g_ref, atol=5e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="NHWC"):
        ours.apply(params, x[0])


@pytest.mark.parametrize("batch,budget_elements", [(5, 1), (8, 8), (12, 4), (12, 5), (6, 100)])
def test_cpu_attention_matches_xla_attention_and_its_gradient(batch, budget_elements, monkeypatch):
    # budget of 1 and (5, ...): map of single elements; 8 of 8: no map; 12 within 4 or 5: map of chunks of 4
    monkeypatch.setattr(layers, "CPU_ATTENTION_SCORE_BYTES", budget_elements * 4 * 2 * 10 * 10)
    q, k, v = jax.random.normal(jax.random.key(batch), (3, batch, 10, 2, 4))
    probe = jax.random.normal(jax.random.key(99), (batch, 10, 2, 4))

    def value_and_grads(fn):
        return jax.jit(fn)(q, k, v), jax.grad(lambda *a: jnp.sum(fn(*a) * probe), argnums=(0, 1, 2))(q, k, v)

    out, grads = value_and_grads(lambda *a: attention(*a, backend="cpu"))
    ref_out, ref_grads = value_and_grads(jax.nn.dot_product_attention)
    np.testing.assert_allclose(out, ref_out, atol=2e-6)
    for g, g_ref in zip(grads, ref_grads):
        np.testing.assert_allclose(g, g_ref, atol=2e-5)


@pytest.mark.parametrize("kernel,padding", [(3, ((1, 1), (1, 1))), (3, ((0, 2), (2, 1))), (1, ((0, 0), (0, 0))),
                                            (5, ((2, 2), (1, 3)))])
def test_cpu_convolution_matches_lax_in_value_gradients_and_forward_mode(kernel, padding):
    kx, kw, kp, kt = jax.random.split(jax.random.key(kernel), 4)
    x = jax.random.normal(kx, (2, 9, 7, 3))
    w = jax.random.normal(kw, (kernel, kernel, 3, 5))
    dims = lax.conv_dimension_numbers(x.shape, w.shape, ("NHWC", "HWIO", "NHWC"))
    ref = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=dims)  # noqa: E731
    ours = lambda x, w: convolution(x, w, (1, 1), padding, dimension_numbers=dims, backend="cpu")  # noqa: E731
    probe = jax.random.normal(kp, ref(x, w).shape)
    tangents = tuple(jax.random.normal(k, a.shape) for k, a in zip(jax.random.split(kt), (x, w)))

    def check(fn):
        value = fn(x, w)
        grads = jax.grad(lambda *a: jnp.sum(fn(*a) * probe), argnums=(0, 1))(x, w)
        _, jvp = jax.jvp(fn, (x, w), tangents)
        # One side differentiated (the other's tangent is a symbolic zero).
        grad_w = jax.grad(lambda w: jnp.sum(fn(x, w) * probe))(w)
        _, jvp_w = jax.jvp(lambda w: fn(x, w), (w,), tangents[1:])
        # Inside a loop, where XLA:CPU's own layout choice is the slow one this function avoids.
        looped = jax.jit(lambda x: lax.fori_loop(0, 2, lambda i, c: jax.vjp(lambda z: fn(z, w), c)[1](probe)[0], x))(x)
        return value, *grads, jvp, grad_w, jvp_w, looped

    for got, want in zip(check(ours), check(ref)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    assert ours(x, w).shape == ref(x, w).shape


def test_convolution_falls_back_to_lax_off_its_fast_case():
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    w = jax.random.normal(jax.random.key(1), (3, 3, 3, 4))
    dims = lax.conv_dimension_numbers(x.shape, w.shape, ("NHWC", "HWIO", "NHWC"))
    for args in [((2, 2), ((1, 1), (1, 1))), ((1, 1), "SAME")]:
        np.testing.assert_allclose(convolution(x, w, *args, dimension_numbers=dims, backend="cpu"),
                                   lax.conv_general_dilated(x, w, *args, dimension_numbers=dims), rtol=1e-6, atol=1e-6)
    grad = jax.grad(lambda x: jnp.sum(convolution(x, w, (1, 1), "SAME", dimension_numbers=dims, backend="gpu") ** 2))(x)
    assert grad.shape == x.shape
