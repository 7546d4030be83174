"""The conv layers of vaekit.nn are flax's: same outputs, gradients and parameters under every plan; clear errors.

Every layer is compared with the plain ``flax.nnx`` module it claims to be, sharing its
parameters: ``nnx.Conv`` and ``nnx.ConvTranspose`` (``padding="SAME"``), ``jnp.repeat``
then ``nnx.Conv`` for :class:`RepeatUpsample`, and ``nnx.Conv`` then a pixel shuffle
written here by explicit indexing for :class:`PixelShuffleUpsample` (those two hold that
``nnx.Conv``'s parameters under ``conv``). Each comparison runs under every
:class:`vaekit._fastconv.ConvPlan`, and a jaxpr check makes sure each plan really takes
its own path (else the comparisons would all test flax against itself).
"""

import dataclasses
import functools
import pathlib
import warnings
import zlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vaekit import _fastconv, models, nn, segmentation
from vaekit._fastconv import ConvPlan

PLANS = {
    "flax": ConvPlan(),
    "subpixel": ConvPlan(subpixel=True),
    "space_to_depth": ConvPlan(space_to_depth=True),
    "patches": ConvPlan(patches=True),
    "all": ConvPlan(subpixel=True, space_to_depth=True, patches=True),
}
BATCH = 2
RTOL = 1e-5


@pytest.mark.parametrize("module", [nn, _fastconv], ids=lambda m: m.__name__)
def test_the_source_compiles_without_warnings(module):
    """Compiled afresh (no cached bytecode, as under ``PYTHONDONTWRITEBYTECODE``), a warning is an import error here."""
    path = pathlib.Path(module.__file__)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compile(path.read_text(encoding="utf-8"), str(path), "exec")


# --- the cases and their flax references ----------------------------------------------------------


class Case(NamedTuple):
    """One layer: ``kind`` from LAYERS, input ``size`` (int or (height, width)), channels, kernel, stride/factor."""

    kind: str
    size: int | tuple[int, int]
    cin: int
    cout: int
    kernel: int
    stride: int

    def __str__(self):
        size = self.size if isinstance(self.size, int) else "x".join(map(str, self.size))
        return f"{self.kind}-{size}-c{self.cin}to{self.cout}-k{self.kernel}-s{self.stride}"

    @property
    def hw(self) -> tuple[int, int]:
        return (self.size, self.size) if isinstance(self.size, int) else self.size

    @property
    def upsamples(self) -> bool:
        return self.kind in ("transposed", "repeat", "pixel_shuffle")

    @property
    def owns_a_conv(self) -> bool:
        """The layer is not a flax module itself: it holds the flax module's parameters as ``conv``."""
        return self.kind in ("repeat", "pixel_shuffle")

    def conv_of(self, layer: nnx.Module) -> nnx.Module:
        """The part of ``layer`` that is the flax module: its ``conv``, or the layer itself."""
        return layer.conv if self.owns_a_conv else layer

    def output_shape(self) -> tuple[int, int, int, int]:
        h, w = self.hw
        if self.upsamples:
            return (BATCH, h * self.stride, w * self.stride, self.cout)
        return (BATCH, -(-h // self.stride), -(-w // self.stride), self.cout)

    def layer(self, rngs: nnx.Rngs) -> nnx.Module:
        cin, cout, k, s = self.cin, self.cout, self.kernel, self.stride
        if self.kind == "conv":
            return nn.Conv(cin, cout, k, s, rngs=rngs)
        if self.kind == "downsample":
            return nn.Downsample(cin, cout, kernel_size=k, factor=s, rngs=rngs)
        if self.kind == "transposed":
            return nn.ConvTranspose(cin, cout, k, s, rngs=rngs)
        if self.kind == "repeat":
            return nn.RepeatUpsample(cin, cout, k, s, rngs=rngs)
        return nn.PixelShuffleUpsample(cin, cout, k, s, rngs=rngs)

    def flax_module(self, rngs: nnx.Rngs) -> nnx.Module:
        """The plain flax module whose parameters the layer has."""
        cin, cout, k, s = self.cin, self.cout, self.kernel, self.stride
        if self.kind in ("conv", "downsample"):
            return nnx.Conv(cin, cout, (k, k), (s, s), padding="SAME", rngs=rngs)
        if self.kind == "transposed":
            return nnx.ConvTranspose(cin, cout, (k, k), (s, s), padding="SAME", rngs=rngs)
        if self.kind == "repeat":
            return nnx.Conv(cin, cout, (k, k), (1, 1), padding="SAME", rngs=rngs)
        return nnx.Conv(cin, cout * s * s, (k, k), (1, 1), padding="SAME", rngs=rngs)

    def flax_forward(self, module: nnx.Module, x: jax.Array) -> jax.Array:
        """What the layer computes, spelled with the plain flax module."""
        if self.kind == "repeat":
            return module(jnp.repeat(jnp.repeat(x, self.stride, axis=1), self.stride, axis=2))
        if self.kind == "pixel_shuffle":
            return pixel_shuffle_by_indexing(module(x), self.stride)
        return module(x)


def pixel_shuffle_by_indexing(y: jax.Array, factor: int) -> jax.Array:
    """Output pixel ``(f i + a, f j + b)``, channel ``c`` is input pixel ``(i, j)``, channel ``(a f + b) C + c``."""
    _, h, w, channels = y.shape
    out = channels // (factor * factor)
    rows, cols, chans = np.meshgrid(np.arange(h * factor), np.arange(w * factor), np.arange(out), indexing="ij")
    source_channel = ((rows % factor) * factor + cols % factor) * out + chans
    return y[:, rows // factor, cols // factor, source_channel]


CASES = [
    # Convolutions: odd and even sizes, 1 and several channels, kernels 1-5, strides 1-3.
    Case("conv", 7, 1, 1, 3, 1),
    Case("conv", 7, 4, 1, 5, 1),
    Case("conv", 7, 1, 4, 4, 2),  # one input channel: space-to-depth; SAME padding (1, 2)
    Case("conv", 14, 3, 2, 4, 2),  # several channels: a plain strided convolution
    Case("conv", 28, 2, 3, 3, 2),  # padding (0, 1)
    Case("conv", 28, 1, 8, 5, 2),
    Case("conv", 64, 1, 4, 4, 2),
    Case("conv", 9, 3, 2, 3, 3),
    Case("conv", 14, 1, 2, 5, 3),
    Case("conv", 7, 3, 2, 1, 1),  # 1x1: a matmul over channels
    Case("conv", 7, 1, 2, 1, 2),  # kernel smaller than the stride
    Case("conv", 14, 2, 1, 1, 3),
    Case("conv", (6, 9), 2, 3, 3, 2),  # not square
    Case("downsample", 28, 1, 8, 4, 2),
    Case("downsample", 7, 3, 4, 4, 2),
    Case("downsample", 9, 2, 3, 5, 3),
    # Transposed convolutions.
    Case("transposed", 7, 8, 4, 4, 2),
    Case("transposed", 7, 1, 1, 4, 2),
    Case("transposed", 14, 3, 1, 4, 2),  # one output channel: the dilated path
    Case("transposed", 14, 1, 3, 3, 2),
    Case("transposed", 7, 2, 3, 5, 2),
    Case("transposed", 7, 2, 2, 1, 2),  # kernel smaller than the stride: empty phases
    Case("transposed", 28, 1, 2, 4, 2),
    Case("transposed", 5, 2, 3, 3, 3),
    Case("transposed", 5, 2, 3, 4, 3),
    Case("transposed", 4, 2, 2, 1, 3),
    Case("transposed", 7, 3, 2, 3, 1),
    Case("transposed", (5, 8), 2, 3, 4, 2),
    # Nearest-neighbour upsampling, then a convolution.
    Case("repeat", 7, 8, 4, 3, 2),
    Case("repeat", 7, 1, 1, 3, 2),
    Case("repeat", 14, 3, 2, 1, 2),
    Case("repeat", 7, 2, 3, 4, 2),
    Case("repeat", 7, 2, 3, 5, 2),
    Case("repeat", 28, 1, 2, 3, 2),
    Case("repeat", 5, 2, 2, 3, 3),
    Case("repeat", 5, 1, 3, 4, 3),
    Case("repeat", 4, 2, 2, 3, 1),
    Case("repeat", (4, 7), 2, 3, 3, 2),
    # Sub-pixel convolution.
    Case("pixel_shuffle", 7, 8, 4, 3, 2),
    Case("pixel_shuffle", 7, 1, 1, 3, 2),
    Case("pixel_shuffle", 14, 3, 2, 1, 2),
    Case("pixel_shuffle", 28, 1, 2, 5, 2),
    Case("pixel_shuffle", 5, 2, 3, 4, 3),
    Case("pixel_shuffle", (4, 6), 2, 1, 3, 2),
]


def random_parameters(case: Case, rng: np.random.Generator):
    """The layer's graph, the flax module's graph, and random (non-zero bias) parameters of the flax module.

    :func:`merge_layer` gives them to the layer.
    """
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: case.layer(nnx.Rngs(0))))
    flax_graphdef, flax_abstract = nnx.split(nnx.eval_shape(lambda: case.flax_module(nnx.Rngs(0))))
    if case.owns_a_conv:
        assert list(abstract) == ["conv"], "an upsampling holds its conv's parameters and nothing else"
        abstract = abstract["conv"]
    assert jax.tree.structure(abstract) == jax.tree.structure(flax_abstract)
    params = jax.tree.map(lambda a: rng.standard_normal(a.shape).astype(np.float32), flax_abstract)
    return graphdef, flax_graphdef, params


def merge_layer(case: Case, graphdef, params) -> nnx.Module:
    """The layer holding the flax module's ``params`` (in its ``conv`` if it owns one)."""
    return nnx.merge(graphdef, nnx.State({"conv": params}) if case.owns_a_conv else params)


class Computed(NamedTuple):
    output: np.ndarray
    grad_x: np.ndarray
    grad_params: nnx.State  # kernel and bias


@functools.cache
def computed(case: Case) -> dict[str, Computed]:
    """Output and gradients of ``sum(P * layer(x))`` (random ``P``) per plan, and of the flax reference.

    One compilation per case computes them all (the plan is read when the layer is traced).
    """
    rng = np.random.default_rng(zlib.crc32(str(case).encode()))
    graphdef, flax_graphdef, params = random_parameters(case, rng)
    x = rng.standard_normal((BATCH, *case.hw, case.cin)).astype(np.float32)
    projection = rng.standard_normal(case.output_shape()).astype(np.float32)

    def evaluate(forward, params, x):
        loss = lambda params, x: jnp.sum(projection * forward(params, x))
        grad_params, grad_x = jax.grad(loss, argnums=(0, 1))(params, x)
        return Computed(forward(params, x), grad_x, grad_params)

    @jax.jit
    def run(params, x):
        results = {}
        for name, plan in PLANS.items():
            with _fastconv.use_plan(plan):
                results[name] = evaluate(lambda p, x: merge_layer(case, graphdef, p)(x), params, x)
        results["flax reference"] = evaluate(lambda p, x: case.flax_forward(nnx.merge(flax_graphdef, p), x), params, x)
        return results

    with jax.default_matmul_precision("highest"):
        return jax.device_get(run(params, x))


def assert_close(actual, expected, what: str) -> None:
    """Equal to ``RTOL`` relative, with an absolute floor of ``RTOL`` times the largest value (cancellation)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, flax gives {expected.shape}"
    scale = float(np.max(np.abs(expected)))
    assert scale > 0, f"{what}: flax's value is all zeros, the comparison would be empty"
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=RTOL * scale, err_msg=what)


# --- outputs, gradients, parameters ---------------------------------------------------------------


@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_output_equals_flax(case, plan):
    results = computed(case)
    assert results[plan].output.shape == case.output_shape()
    assert_close(results[plan].output, results["flax reference"].output, f"{case} output under plan {plan}")


@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_gradients_equal_flax(case, plan):
    ours, reference = computed(case)[plan], computed(case)["flax reference"]
    assert_close(ours.grad_x, reference.grad_x, f"{case} input gradient under plan {plan}")
    for name in ("kernel", "bias"):
        assert_close(ours.grad_params[name][...], reference.grad_params[name][...],
                     f"{case} {name} gradient under plan {plan}")


PARAMETER_CASES = [
    Case("conv", 7, 1, 8, 3, 1),
    Case("conv", 7, 3, 4, 4, 2),
    Case("downsample", 7, 2, 5, 4, 2),
    Case("transposed", 7, 8, 4, 4, 2),
    Case("transposed", 7, 2, 3, 3, 3),
    Case("repeat", 7, 8, 4, 3, 2),
    Case("pixel_shuffle", 7, 8, 4, 3, 2),
    Case("pixel_shuffle", 7, 2, 3, 5, 3),
]


def flat_parameters(module: nnx.Module) -> dict[str, np.ndarray]:
    return {"/".join(map(str, path)): np.asarray(leaf) for path, leaf in nnx.to_flat_state(nnx.state(module, nnx.Param))}


@pytest.mark.parametrize("case", PARAMETER_CASES, ids=str)
def test_parameters_are_those_of_the_flax_module_with_the_same_seed(case):
    layer, reference = case.layer(nnx.Rngs(7)), case.flax_module(nnx.Rngs(7))
    conv = case.conv_of(layer)
    assert isinstance(conv, type(reference))
    if case.owns_a_conv:  # a module that owns a conv, not a conv whose output shape it changes
        assert not isinstance(layer, (nnx.Conv, nnx.ConvTranspose)) and layer.factor == case.stride
        assert sorted(flat_parameters(layer)) == ["conv/bias", "conv/kernel"]
    ours, theirs = flat_parameters(conv), flat_parameters(reference)
    assert list(ours) == list(theirs) and len(ours) == 2, "the same parameter names (a kernel and a bias)"
    for name in ours:
        assert ours[name].shape == theirs[name].shape and ours[name].dtype == theirs[name].dtype == np.float32
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=f"{case}: initial {name}")
    assert np.all(ours["bias"] == 0.0) and np.std(ours["kernel"]) > 0
    assert (conv.in_features, conv.out_features, conv.kernel_size, conv.strides, conv.padding) == (
        reference.in_features, reference.out_features, reference.kernel_size, reference.strides, reference.padding)
    # Another seed draws another kernel: the seed reaches the initialiser.
    assert not np.array_equal(flat_parameters(case.conv_of(case.layer(nnx.Rngs(8))))["kernel"], ours["kernel"])


@pytest.mark.parametrize("case", [Case("transposed", 7, 8, 4, 4, 2), Case("repeat", 7, 8, 4, 3, 2),
                                  Case("pixel_shuffle", 7, 8, 4, 3, 2)], ids=str)
def test_a_flax_modules_parameters_load_into_the_layer_and_give_its_outputs(case):
    reference, layer = case.flax_module(nnx.Rngs(1)), case.layer(nnx.Rngs(2))
    nnx.update(case.conv_of(layer), nnx.state(reference))
    x = jax.random.normal(jax.random.key(0), (BATCH, 7, 7, 8))
    with jax.default_matmul_precision("highest"):
        assert_close(layer(x), case.flax_forward(reference, x), "layer with the flax module's parameters")


# --- forward-mode derivatives and input dtypes ----------------------------------------------------

JVP_CASES = [
    Case("conv", 8, 3, 2, 4, 2),
    Case("conv", 8, 1, 2, 4, 2),
    Case("conv", 7, 1, 3, 3, 1),
    Case("conv", 6, 3, 2, 1, 1),
    Case("transposed", 5, 3, 2, 4, 2),
    Case("transposed", 5, 3, 1, 4, 2),
    Case("repeat", 5, 3, 2, 3, 2),
]


@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("case", JVP_CASES, ids=str)
def test_forward_mode_derivatives_equal_flax(case, plan):
    """``jax.jvp`` (hence ``jax.jacfwd``, ``jax.hessian``) works through the layer as through flax's."""
    rng = np.random.default_rng(5)
    graphdef, flax_graphdef, params = random_parameters(case, rng)
    x, dx = (rng.standard_normal((BATCH, *case.hw, case.cin)).astype(np.float32) for _ in range(2))
    dparams = jax.tree.map(lambda p: rng.standard_normal(p.shape).astype(np.float32), params)
    with jax.default_matmul_precision("highest"):
        with _fastconv.use_plan(PLANS[plan]):
            _, ours = jax.jvp(lambda p, x: merge_layer(case, graphdef, p)(x), (params, x), (dparams, dx))
        _, theirs = jax.jvp(lambda p, x: case.flax_forward(nnx.merge(flax_graphdef, p), x), (params, x), (dparams, dx))
    assert_close(ours, theirs, f"{case} directional derivative under plan {plan}")


@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("case", JVP_CASES, ids=str)
def test_second_derivatives_equal_flax(case, plan):
    """A Hessian-vector product (forward mode over reverse mode) through a smooth loss of the layer."""
    rng = np.random.default_rng(8)
    graphdef, flax_graphdef, params = random_parameters(case, rng)
    x, dx = (rng.standard_normal((BATCH, *case.hw, case.cin)).astype(np.float32) for _ in range(2))
    dparams = jax.tree.map(lambda p: rng.standard_normal(p.shape).astype(np.float32), params)

    def hvp(forward):
        gradient = jax.grad(lambda p, x: jnp.sum(jnp.tanh(forward(p, x))), argnums=(0, 1))
        return jax.jvp(gradient, (params, x), (dparams, dx))[1]

    with jax.default_matmul_precision("highest"):
        with _fastconv.use_plan(PLANS[plan]):
            ours = hvp(lambda p, x: merge_layer(case, graphdef, p)(x))
        theirs = hvp(lambda p, x: case.flax_forward(nnx.merge(flax_graphdef, p), x))
    for a, b, what in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), ("bias", "kernel", "input")):
        assert_close(a, b, f"{case} Hessian-vector product ({what} part) under plan {plan}")


def test_per_example_gradients_under_vmap_equal_flax():
    case = Case("conv", 8, 2, 3, 4, 2)
    graphdef, flax_graphdef, params = random_parameters(case, np.random.default_rng(9))
    x = np.random.default_rng(10).standard_normal((3, 1, *case.hw, case.cin)).astype(np.float32)

    def per_example(forward):
        return jax.vmap(jax.grad(lambda p, x: jnp.sum(jnp.square(forward(p, x)))), in_axes=(None, 0))(params, x)

    with jax.default_matmul_precision("highest"):
        with _fastconv.use_plan(PLANS["all"]):
            ours = per_example(lambda p, x: merge_layer(case, graphdef, p)(x))
        theirs = per_example(lambda p, x: case.flax_forward(nnx.merge(flax_graphdef, p), x))
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
        assert a.shape[0] == 3
        assert_close(a, b, "per-example gradient under vmap")


@pytest.mark.parametrize("case", [Case("conv", 8, 3, 2, 4, 2), Case("transposed", 5, 3, 2, 4, 2),
                                  Case("repeat", 5, 3, 2, 3, 2), Case("pixel_shuffle", 5, 3, 2, 3, 2)], ids=str)
def test_a_bfloat16_input_is_promoted_as_flax_does(case):
    """``nnx.Conv`` promotes a bfloat16 input and float32 parameters to float32; so must the layer."""
    graphdef, flax_graphdef, params = random_parameters(case, np.random.default_rng(6))
    x = jnp.asarray(np.random.default_rng(7).standard_normal((BATCH, *case.hw, case.cin)), jnp.bfloat16)
    with jax.default_matmul_precision("highest"):
        theirs = case.flax_forward(nnx.merge(flax_graphdef, params), x)
        ours = merge_layer(case, graphdef, params)(x)
    assert ours.dtype == theirs.dtype == jnp.float32
    assert_close(ours, theirs, f"{case} output for a bfloat16 input")


# --- the plans take their own paths ---------------------------------------------------------------


def abstract(make):
    """A layer's graph and parameter shapes, without running its initialisers."""
    return nnx.split(nnx.eval_shape(make))


def conv_equations(function, *args) -> list:
    """Every ``conv_general_dilated`` in the jaxpr of ``function`` (nested jaxprs included)."""

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            yield eqn
            for value in eqn.params.values():
                for sub in value if isinstance(value, (tuple, list)) else (value,):
                    inner = getattr(sub, "jaxpr", sub)
                    if hasattr(inner, "eqns"):
                        yield from walk(inner)

    return [e for e in walk(jax.make_jaxpr(function)(*args).jaxpr) if e.primitive.name == "conv_general_dilated"]


def dilates_its_input(eqn) -> bool:
    return tuple(eqn.params["lhs_dilation"]) != (1, 1)


def dilates(eqn) -> bool:
    """Zeros between input pixels or between kernel taps: the kernel gradient of a dilated convolution has the latter."""
    return dilates_its_input(eqn) or tuple(eqn.params["rhs_dilation"]) != (1, 1)


@pytest.mark.parametrize("plan", PLANS)
def test_each_plan_computes_the_layers_its_own_way(plan):
    chosen = PLANS[plan]
    x = jax.ShapeDtypeStruct((1, 8, 8, 3), jnp.float32)
    thin_x = jax.ShapeDtypeStruct((1, 8, 8, 1), jnp.float32)

    def convs(make, x, *, grad=None):
        graphdef, params = abstract(make)
        forward = lambda params, x: nnx.merge(graphdef, params)(x)
        if grad is not None:
            forward = jax.grad(lambda params, x: jnp.sum(nnx.merge(graphdef, params)(x)), argnums=grad)
        return conv_equations(forward, params, x)

    with _fastconv.use_plan(chosen):
        # A transposed convolution: zero-dilated input (flax) or one stride-1 convolution per phase...
        transposed = lambda: nn.ConvTranspose(3, 4, rngs=nnx.Rngs(0))
        up = convs(transposed, x)
        assert any(map(dilates_its_input, up)) != chosen.subpixel
        assert len(up) == (4 if chosen.subpixel else 1)
        # ... and so its kernel gradient; its input gradient is a strided convolution either way.
        assert any(map(dilates, convs(transposed, x, grad=0))) != chosen.subpixel
        assert any(tuple(e.params["window_strides"]) == (2, 2) for e in convs(transposed, x, grad=1))
        # With one output channel it keeps the dilated convolution.
        assert any(map(dilates_its_input, convs(lambda: nn.ConvTranspose(3, 1, rngs=nnx.Rngs(0)), x)))
        # Repeat + conv: a convolution of the 16x16 repeated image, or of the 8x8 coarse one per phase.
        repeat = convs(lambda: nn.RepeatUpsample(3, 4, rngs=nnx.Rngs(0)), x)
        assert {e.invars[0].aval.shape[1] for e in repeat} == ({8} if chosen.subpixel else {16})
        # A strided convolution: its input gradient convolves a zero-dilated image, or stride 1 over 2x2 blocks.
        strided = lambda: nn.Conv(3, 4, 4, 2, rngs=nnx.Rngs(0))
        assert {tuple(e.params["window_strides"]) for e in convs(strided, x)} == {(2, 2)}
        assert any(map(dilates_its_input, convs(strided, x, grad=1))) != chosen.space_to_depth
        # ... and with a one-channel input its output is computed over blocks too.
        thin = convs(lambda: nn.Conv(1, 4, 4, 2, rngs=nnx.Rngs(0)), thin_x)
        assert {tuple(e.params["window_strides"]) for e in thin} == ({(1, 1)} if chosen.space_to_depth else {(2, 2)})
        # A stride-1 convolution of a one-channel image: a convolution, or one product with its 3x3 patches.
        stem = lambda: nn.Conv(1, 4, 3, rngs=nnx.Rngs(0))
        assert (len(convs(stem, thin_x)) == 0) == chosen.patches
        assert (len(convs(stem, thin_x, grad=1)) == 0) == chosen.patches
        assert convs(stem, thin_x, grad=0)  # its kernel gradient stays a convolution
        # A 1x1 convolution: a convolution, or a matmul over channels in every part.
        pointwise = lambda: nn.Conv(3, 4, 1, rngs=nnx.Rngs(0))
        assert all((len(convs(pointwise, x, grad=g)) == 0) == chosen.patches for g in (None, 0, 1))


def test_an_explicit_plan_argument_overrides_the_current_plan():
    x, kernel = jax.ShapeDtypeStruct((1, 5, 5, 3), jnp.float32), jnp.ones((4, 4, 3, 2))
    with _fastconv.use_plan(ConvPlan()):
        subpixel = conv_equations(lambda x: _fastconv.conv_transpose(x, kernel, plan=PLANS["subpixel"]), x)
        default = conv_equations(lambda x: _fastconv.conv_transpose(x, kernel), x)
    assert not any(map(dilates_its_input, subpixel)) and any(map(dilates_its_input, default))


@pytest.mark.parametrize("plan", PLANS)
def test_functional_forms_without_bias_equal_flax(plan):
    rng = np.random.default_rng(11)
    x = jnp.asarray(rng.standard_normal((BATCH, 7, 7, 3)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((4, 4, 3, 2)), jnp.float32)
    with jax.default_matmul_precision("highest"):
        conv = nnx.Conv(3, 2, (4, 4), (2, 2), padding="SAME", use_bias=False, rngs=nnx.Rngs(0))
        transposed = nnx.ConvTranspose(3, 2, (4, 4), (2, 2), padding="SAME", use_bias=False, rngs=nnx.Rngs(0))
        repeat = nnx.Conv(3, 2, (4, 4), padding="SAME", use_bias=False, rngs=nnx.Rngs(0))
        for module in (conv, transposed, repeat):
            module.kernel[...] = kernel
        up = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        chosen = PLANS[plan]
        assert_close(_fastconv.conv(x, kernel, strides=2, plan=chosen), conv(x), "conv")
        assert_close(_fastconv.conv_transpose(x, kernel, strides=2, plan=chosen), transposed(x), "conv_transpose")
        assert_close(_fastconv.repeat_conv(x, kernel, factor=2, plan=chosen), repeat(up), "repeat_conv")


# --- plans ----------------------------------------------------------------------------------------


def test_plan_for_each_backend():
    assert _fastconv.plan_for("cpu") == ConvPlan(subpixel=True, space_to_depth=True, patches=True) == PLANS["all"]
    assert _fastconv.plan_for("gpu") == _fastconv.plan_for("tpu") == ConvPlan() == ConvPlan(False, False, False)
    assert {f.name for f in dataclasses.fields(ConvPlan)} == {"subpixel", "space_to_depth", "patches"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        ConvPlan().subpixel = True


def test_current_plan_is_the_backends_outside_use_plan():
    assert _fastconv.current_plan() == _fastconv.plan_for(jax.default_backend())


def test_use_plan_sets_the_plan_and_restores_the_previous_one():
    outer, inner = PLANS["subpixel"], PLANS["space_to_depth"]
    default = _fastconv.current_plan()
    with _fastconv.use_plan(outer) as given:
        assert given is outer and _fastconv.current_plan() == outer
        with _fastconv.use_plan(inner):
            assert _fastconv.current_plan() == inner
        assert _fastconv.current_plan() == outer
    assert _fastconv.current_plan() == default


def test_use_plan_restores_the_previous_plan_when_the_block_raises():
    default = _fastconv.current_plan()
    with _fastconv.use_plan(PLANS["flax"]):
        with pytest.raises(ZeroDivisionError):
            with _fastconv.use_plan(PLANS["space_to_depth"]):
                assert _fastconv.current_plan() == PLANS["space_to_depth"]
                1 / 0
        assert _fastconv.current_plan() == PLANS["flax"]
    assert _fastconv.current_plan() == default


def test_use_plan_takes_only_a_plan():
    default = _fastconv.current_plan()
    with pytest.raises(TypeError, match="plan must be a ConvPlan; got dict"):
        with _fastconv.use_plan({"subpixel": True}):
            pass
    assert _fastconv.current_plan() == default


# --- pixel shuffle --------------------------------------------------------------------------------


def test_pixel_shuffle_known_answers():
    # Two channels out: channel (a*2 + b)*2 + c goes to pixel (a, b), channel c.
    x = jnp.arange(8.0).reshape(1, 1, 1, 8)
    expected = np.array([[[0, 1], [2, 3]], [[4, 5], [6, 7]]], np.float32)  # [a, b, c]
    np.testing.assert_array_equal(nn.pixel_shuffle(x, 2)[0], expected)
    # Two pixels side by side: each becomes its own 2x2 block.
    x = jnp.arange(8.0).reshape(1, 1, 2, 4)
    np.testing.assert_array_equal(nn.pixel_shuffle(x, 2)[0, :, :, 0], [[0, 1, 4, 5], [2, 3, 6, 7]])
    # Factor 3 on a 2x1 image with one channel out.
    x = jnp.arange(18.0).reshape(1, 2, 1, 9)
    np.testing.assert_array_equal(nn.pixel_shuffle(x, 3)[0, :, :, 0],
                                  [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11], [12, 13, 14], [15, 16, 17]])
    # Factor 1 changes nothing.
    x = jnp.arange(24.0).reshape(2, 2, 3, 2)
    np.testing.assert_array_equal(nn.pixel_shuffle(x, 1), x)


def test_pixel_shuffle_equals_the_explicit_indexing_it_is_tested_against():
    y = jnp.asarray(np.random.default_rng(0).standard_normal((2, 3, 5, 18)), jnp.float32)
    for factor in (1, 3):
        np.testing.assert_array_equal(nn.pixel_shuffle(y, factor), pixel_shuffle_by_indexing(y, factor))
    # The reference itself passes the hand-written example.
    np.testing.assert_array_equal(pixel_shuffle_by_indexing(jnp.arange(8.0).reshape(1, 1, 2, 4), 2)[0, :, :, 0],
                                  [[0, 1, 4, 5], [2, 3, 6, 7]])


# --- errors ---------------------------------------------------------------------------------------

ERRORS = {
    "shuffle factor 0": (lambda: nn.pixel_shuffle(jnp.zeros((1, 2, 2, 4)), 0), "factor must be a positive integer; got 0"),
    "shuffle factor -2": (lambda: nn.pixel_shuffle(jnp.zeros((1, 2, 2, 4)), -2),
                          "factor must be a positive integer; got -2"),
    "shuffle factor 2.0": (lambda: nn.pixel_shuffle(jnp.zeros((1, 2, 2, 4)), 2.0),
                           "factor must be a positive integer; got 2.0"),
    "shuffle of a 3-d array": (lambda: nn.pixel_shuffle(jnp.zeros((2, 2, 4)), 2),
                               "pixel_shuffle: x must be (batch, height, width, channels); got shape (2, 2, 4)"),
    "shuffle of 6 channels": (lambda: nn.pixel_shuffle(jnp.zeros((1, 2, 2, 6)), 2),
                              "pixel_shuffle: channels (6) must be a multiple of factor**2 = 4"),
    "unknown upsampling": (lambda: nn.make_upsample("bilinear", 4, 2, rngs=nnx.Rngs(0)),
                           "upsampling must be one of 'transposed', 'repeat', 'pixel_shuffle'; got 'bilinear'"),
    "conv in 0": (lambda: nn.Conv(0, 4, 3, rngs=nnx.Rngs(0)), "in_features must be a positive integer; got 0"),
    "conv out -2": (lambda: nn.Conv(1, -2, 3, rngs=nnx.Rngs(0)), "out_features must be a positive integer; got -2"),
    "conv kernel 0": (lambda: nn.Conv(1, 4, 0, rngs=nnx.Rngs(0)), "kernel_size must be a positive integer; got 0"),
    "conv kernel 2.5": (lambda: nn.Conv(1, 4, 2.5, rngs=nnx.Rngs(0)), "kernel_size must be a positive integer; got 2.5"),
    "conv kernel True": (lambda: nn.Conv(1, 4, True, rngs=nnx.Rngs(0)),
                         "kernel_size must be a positive integer; got True"),
    "conv strides 0": (lambda: nn.Conv(1, 4, 3, 0, rngs=nnx.Rngs(0)), "strides must be a positive integer; got 0"),
    "downsample out 0": (lambda: nn.Downsample(1, 0, rngs=nnx.Rngs(0)), "out_features must be a positive integer; got 0"),
    "downsample kernel -1": (lambda: nn.Downsample(1, 4, kernel_size=-1, rngs=nnx.Rngs(0)),
                             "kernel_size must be a positive integer; got -1"),
    "downsample factor 0": (lambda: nn.Downsample(1, 4, factor=0, rngs=nnx.Rngs(0)),
                            "factor must be a positive integer; got 0"),
    "transposed in -1": (lambda: nn.ConvTranspose(-1, 4, rngs=nnx.Rngs(0)), "in_features must be a positive integer; got -1"),
    "transposed kernel 0": (lambda: nn.ConvTranspose(2, 4, 0, rngs=nnx.Rngs(0)),
                            "kernel_size must be a positive integer; got 0"),
    "transposed strides -2": (lambda: nn.ConvTranspose(2, 4, 4, -2, rngs=nnx.Rngs(0)),
                              "strides must be a positive integer; got -2"),
    "repeat out 0": (lambda: nn.RepeatUpsample(2, 0, rngs=nnx.Rngs(0)), "out_features must be a positive integer; got 0"),
    "repeat factor 0": (lambda: nn.RepeatUpsample(2, 4, 3, 0, rngs=nnx.Rngs(0)), "factor must be a positive integer; got 0"),
    "shuffle layer in 0": (lambda: nn.PixelShuffleUpsample(0, 4, rngs=nnx.Rngs(0)),
                           "in_features must be a positive integer; got 0"),
    "shuffle layer kernel 0": (lambda: nn.PixelShuffleUpsample(2, 4, 0, rngs=nnx.Rngs(0)),
                               "kernel_size must be a positive integer; got 0"),
    "shuffle layer factor -1": (lambda: nn.PixelShuffleUpsample(2, 4, 3, -1, rngs=nnx.Rngs(0)),
                                "factor must be a positive integer; got -1"),
}


@pytest.mark.parametrize("case", ERRORS)
def test_bad_arguments_are_a_clear_error(case):
    action, message = ERRORS[case]
    with pytest.raises(ValueError) as raised:
        action()
    assert message in str(raised.value)


WRONG_CHANNELS = {
    "Conv": lambda: nn.Conv(3, 4, 3, rngs=nnx.Rngs(0)),
    "Downsample": lambda: nn.Downsample(3, 4, rngs=nnx.Rngs(0)),
    "ConvTranspose": lambda: nn.ConvTranspose(3, 4, rngs=nnx.Rngs(0)),
    "RepeatUpsample": lambda: nn.RepeatUpsample(3, 4, rngs=nnx.Rngs(0)),
    "PixelShuffleUpsample": lambda: nn.PixelShuffleUpsample(3, 4, rngs=nnx.Rngs(0)),
}


@pytest.mark.parametrize("name", WRONG_CHANNELS)
def test_an_input_of_the_wrong_channels_or_rank_names_the_layer_and_the_expected_shape(name):
    layer = nnx.eval_shape(WRONG_CHANNELS[name])  # the check comes before any arithmetic
    with pytest.raises(ValueError) as raised:
        layer(jnp.zeros((2, 8, 8, 2)))
    assert str(raised.value) == f"{name}: x must be (batch, height, width, 3); got shape (2, 8, 8, 2)"
    with pytest.raises(ValueError) as raised:
        layer(jnp.zeros((8, 8, 3)))
    assert str(raised.value) == f"{name}: x must be (batch, height, width, 3); got shape (8, 8, 3)"


# --- make_upsample and _fastconv.preferred_loop ---------------------------------------------------


@pytest.mark.parametrize(("kind", "layer_type", "kernel", "kernel_shape"), [
    ("transposed", nn.ConvTranspose, "kernel", (4, 4, 6, 5)),
    ("repeat", nn.RepeatUpsample, "conv/kernel", (3, 3, 6, 5)),
    ("pixel_shuffle", nn.PixelShuffleUpsample, "conv/kernel", (3, 3, 6, 20)),
])
def test_make_upsample_builds_each_kind(kind, layer_type, kernel, kernel_shape):
    assert kind in nn.UPSAMPLINGS
    graphdef, params = abstract(lambda: nn.make_upsample(kind, 6, 5, rngs=nnx.Rngs(0)))
    layer = nnx.merge(graphdef, params)
    assert type(layer) is layer_type
    assert {"/".join(map(str, path)): leaf.shape for path, leaf in nnx.to_flat_state(params)} == {
        kernel: kernel_shape, kernel.replace("kernel", "bias"): kernel_shape[-1:]}
    x = jax.ShapeDtypeStruct((2, 7, 7, 6), jnp.float32)
    assert jax.eval_shape(lambda p, x: nnx.merge(graphdef, p)(x), params, x).shape == (2, 14, 14, 5)


def test_upsamplings_are_the_three_documented_kinds():
    assert nn.UPSAMPLINGS == ("transposed", "repeat", "pixel_shuffle")


@pytest.mark.parametrize(("name", "make", "loop"), [
    ("mlp vae", lambda: models.VAE(models.VAEConfig(), rngs=nnx.Rngs(0)), "scan"),
    ("conv vae", lambda: models.VAE(models.VAEConfig(architecture="conv"), rngs=nnx.Rngs(0)), "step"),
    ("unet", lambda: segmentation.UNet(rngs=nnx.Rngs(0)), "step"),
    ("dense layer", lambda: nnx.Linear(3, 4, rngs=nnx.Rngs(0)), "scan"),
    ("flax conv", lambda: nnx.Conv(3, 4, (3, 3), rngs=nnx.Rngs(0)), "step"),
    ("flax transposed conv", lambda: nnx.ConvTranspose(3, 4, (3, 3), rngs=nnx.Rngs(0)), "step"),
    ("upsampling in a sequence", lambda: nnx.Sequential(nnx.Linear(3, 4, rngs=nnx.Rngs(0)),
                                                        nn.RepeatUpsample(4, 2, rngs=nnx.Rngs(0))), "step"),
    ("pixel shuffle upsampling", lambda: nn.PixelShuffleUpsample(4, 2, rngs=nnx.Rngs(0)), "step"),
])
def test_preferred_loop_is_step_for_any_convolution_and_scan_otherwise(name, make, loop):
    assert _fastconv.preferred_loop(nnx.eval_shape(make)) == loop
