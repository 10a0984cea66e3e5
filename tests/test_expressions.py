"""The expression language: each operation against numpy, dtypes, broadcasting, what the syntax tree says, errors."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bsde.expressions import ExpressionError, check_param_name, compile_expression

DIM = 5
PARAMS = {"K": 1.2, "r": 0.05, "w": [0.5, -1.0, 2.0, 0.0, 1.5]}
W = np.array(PARAMS["w"])


def terminal(text: str, params=PARAMS, dim=DIM):
    return compile_expression(text, "terminal", dim, params)


def driver(text: str, params=PARAMS, dim=DIM):
    return compile_expression(text, "driver", dim, params)


# ------------------------------------------------------------------------------ each operation against numpy
CASES = [
    ("sum(x)", lambda x: x.sum(-1)),
    ("mean(x)", lambda x: x.mean(-1)),
    ("max(x)", lambda x: x.max(-1)),
    ("min(x)", lambda x: x.min(-1)),
    ("prod(x)", lambda x: x.prod(-1)),
    ("norm(x)", lambda x: np.sqrt((x * x).sum(-1))),
    ("dot(x, w)", lambda x: x @ W),
    ("dot(w, w)", lambda x: np.full(x.shape[:-1], W @ W)),
    ("x[0] + x[-1] - x[2] * x[3] / x[4]", lambda x: x[..., 0] + x[..., 4] - x[..., 2] * x[..., 3] / x[..., 4]),
    ("x[1] ** 2 + x[0] ** x[2]", lambda x: x[..., 1] ** 2 + x[..., 0] ** x[..., 2]),
    ("-x[0] + +x[1]", lambda x: -x[..., 0] + x[..., 1]),
    ("sum(abs(x - 1))", lambda x: np.abs(x - 1).sum(-1)),
    ("sum(exp(x))", lambda x: np.exp(x).sum(-1)),
    ("sum(log(x))", lambda x: np.log(x).sum(-1)),
    ("sum(sqrt(x))", lambda x: np.sqrt(x).sum(-1)),
    ("sum(relu(x - 1))", lambda x: np.maximum(x - 1, 0).sum(-1)),
    ("relu(K - mean(x))", lambda x: np.maximum(1.2 - x.mean(-1), 0)),
    ("sum(sin(x)) * sum(cos(x))", lambda x: np.sin(x).sum(-1) * np.cos(x).sum(-1)),
    ("sum(tanh(x))", lambda x: np.tanh(x).sum(-1)),
    ("sum(maximum(x, w))", lambda x: np.maximum(x, W).sum(-1)),
    ("minimum(x[0], K)", lambda x: np.minimum(x[..., 0], 1.2)),
    ("sum(where(x > 1, x, -w))", lambda x: np.where(x > 1, x, -W).sum(-1)),
    ("where(max(x) >= K, 1, 0)", lambda x: (x.max(-1) >= 1.2).astype(float)),
    ("sum(clip(x, 0.5, 1.5))", lambda x: np.clip(x, 0.5, 1.5).sum(-1)),
    ("sum(x > 1)", lambda x: (x > 1).sum(-1).astype(float)),
    ("sum((x >= 1) * (x <= 1.5))", lambda x: ((x >= 1) & (x <= 1.5)).sum(-1).astype(float)),
    ("sum(0.5 < x < 1.5)", lambda x: ((x > 0.5) & (x < 1.5)).sum(-1).astype(float)),
    ("sum(x != x[0]) + (x[0] == x[0])", lambda x: (x != x[..., :1]).sum(-1) + 1.0),
    ("x[0] < 1", lambda x: (x[..., 0] < 1).astype(float)),
    ("dim * K + w[2] + w[-1]", lambda x: np.full(x.shape[:-1], 5 * 1.2 + 2.0 + 1.5)),
    ("prod(maximum(x, 1)) ** (1 / dim)", lambda x: np.maximum(x, 1).prod(-1) ** 0.2),
    # |a|^2 written four ways (computed by bsde.squared_norm), and look-alikes that are not |a|^2
    ("sum(x ** 2)", lambda x: (x * x).sum(-1)),
    ("sum((x - w) * (x - w))", lambda x: ((x - W) ** 2).sum(-1)),
    ("dot(x - 1, x - 1)", lambda x: ((x - 1) ** 2).sum(-1)),
    ("norm(x) ** 2", lambda x: (x * x).sum(-1)),
    ("sum(w ** 2) + x[0] ** 2", lambda x: W @ W + x[..., 0] ** 2),
    ("sum((x > 1) * (x > 1))", lambda x: (x > 1).sum(-1).astype(float)),
    ("sum(x ** 3) + sum(x * w) + norm(x) ** 3", lambda x: (x**3).sum(-1) + x @ W + np.sqrt((x * x).sum(-1)) ** 3),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_operations_match_numpy(text, expected, dtype):
    x = np.random.default_rng(0).uniform(0.2, 2.0, size=(64, DIM))
    out = terminal(text)(torch.tensor(x, dtype=dtype))
    assert out.dtype == dtype and out.shape == (64,)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(out.numpy(), expected(x), rtol=tol, atol=tol)


def test_driver_uses_each_variable():
    rng = np.random.default_rng(1)
    t, x, y, z = rng.uniform(size=8), rng.normal(size=(8, DIM)), rng.normal(size=8), rng.normal(size=(8, DIM))
    f = driver("-r * y + t * x[0] - 0.5 * sum(z ** 2) + dot(w, z)")
    out = f(torch.tensor(t), torch.tensor(x), torch.tensor(y), torch.tensor(z))
    np.testing.assert_allclose(out.numpy(), -0.05 * y + t * x[:, 0] - 0.5 * (z * z).sum(-1) + z @ W, rtol=1e-12)
    assert f.names == {"t", "x", "y", "z"}


@pytest.mark.parametrize(("role", "text", "vector", "expected"), [
    ("drift", "0.05 * x", True, lambda t, x: 0.05 * x),
    ("drift", "0.1", False, lambda t, x: np.full_like(x, 0.1)),
    ("sigma", "w * sqrt(abs(x)) + t", True, lambda t, x: W * np.sqrt(np.abs(x)) + t),
    ("sigma", "0.2 * norm(x)", False, lambda t, x: np.repeat(0.2 * np.sqrt((x * x).sum(-1, keepdims=True)), DIM, -1)),
])
def test_drift_and_sigma_are_vectors(role, text, vector, expected):
    x = np.random.default_rng(2).normal(size=(6, DIM))
    out = compile_expression(text, role, DIM, PARAMS)(0.3, torch.tensor(x))
    assert out.shape == (6, DIM)
    np.testing.assert_allclose(out.numpy(), expected(0.3, x), rtol=1e-12)


@pytest.mark.parametrize("text", ["-0.5 * sum(z ** 2)", "-0.5 * sum(z * z)", "-0.5 * dot(z, z)", "-0.5 * norm(z) ** 2"])
def test_squared_norms_of_z_are_fused(text):
    """|z|^2 in a driver goes through bsde.squared_norm (one pass backward over a (batch, steps, dim) Z): the same
    value and gradient as the op-by-op form, and the fused node in the graph."""
    z = torch.randn(4, 3, DIM, dtype=torch.float64, requires_grad=True)
    t, x, y = torch.zeros(4, 3), torch.zeros(4, 3, DIM), torch.zeros(4, 3)
    out = driver(text)(t, x, y, z)
    nodes, pending = set(), [out.grad_fn]
    while pending:
        node = pending.pop()
        if node is not None and type(node).__name__ not in nodes:
            nodes.add(type(node).__name__)
            pending.extend(next_node for next_node, _ in node.next_functions)
    assert any(name.startswith("_SquaredNorm") for name in nodes), nodes
    (grad,) = torch.autograd.grad(out.sum(), z)
    torch.testing.assert_close(out, -0.5 * (z * z).sum(-1), rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(grad, -z, rtol=1e-14, atol=1e-14)


# ------------------------------------------------------------------------------ shapes, dtypes, devices
def test_broadcasting_as_the_solver_and_the_references_call():
    f = driver("-r * y + t - 0.5 * sum(z ** 2)")
    batch, nodes = 4, 6
    # all time steps at once (the model, when f does not use y): t (nodes,), x and z (batch, nodes, dim), y 0-d
    times = torch.arange(nodes, dtype=torch.float64) * 0.1
    x, z = torch.randn(batch, nodes, DIM, dtype=torch.float64), torch.randn(batch, nodes, DIM, dtype=torch.float64)
    out = f(times, x, torch.zeros((), dtype=torch.float64), z)
    assert out.shape == (batch, nodes)
    torch.testing.assert_close(out, times - 0.5 * z.square().sum(-1))
    # one step: t a float, y (batch,); the multilevel Picard engine: t (B,), x (B, dim), y (B,)
    y = torch.randn(batch, dtype=torch.float64)
    assert f(0.3, x[:, 0], y, z[:, 0]).shape == (batch,)
    torch.testing.assert_close(f(times[:batch], x[:, 0], y, z[:, 0]),
                               -0.05 * y + times[:batch] - 0.5 * z[:, 0].square().sum(-1))
    # an expression that uses none of its inputs still has one value per path
    assert driver("0")(0.0, x, y.new_zeros(()), z).shape == (batch, nodes)
    assert terminal("K")(x).shape == (batch, nodes)
    assert terminal("sum(x)")(x[0, 0]).shape == ()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_constants_follow_the_input_dtype_and_gradients_flow(dtype):
    g = terminal("relu(K - mean(x)) + 0.0 * dot(w, x)")
    x = torch.full((3, DIM), 1.0, dtype=dtype, requires_grad=True)
    (grad,) = torch.autograd.grad(g(x).sum(), x)
    assert grad.dtype == dtype
    torch.testing.assert_close(grad, torch.full((3, DIM), -1.0 / DIM, dtype=dtype))
    # a terminal that does not depend on x still has a gradient (zero), as the solver's Z_N takes one
    (zero,) = torch.autograd.grad(terminal("K")(x).sum(), x)
    assert torch.equal(zero, torch.zeros_like(x))


def test_meta_device_follows_the_input():
    """Constants are made on the input's device: on the meta device nothing is computed, but a constant made
    on the CPU would fail to combine."""
    x = torch.empty(4, DIM, device="meta")
    assert terminal("relu(K - dot(w, x)) + max(x)")(x).device.type == "meta"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_cuda():
    x = torch.rand(8, DIM, device="cuda")
    torch.testing.assert_close(terminal("relu(K - mean(x))")(x).cpu(), (1.2 - x.mean(-1)).clamp(min=0).cpu())


def test_compiled_once_and_pickled_as_text():
    g = terminal("relu(K - mean(x))")
    assert terminal("relu(K - mean(x))") is g  # cached
    again = pickle.loads(pickle.dumps(g))
    assert again.text == g.text and again.role == "terminal"
    x = torch.rand(5, DIM, dtype=torch.float64)
    torch.testing.assert_close(again(x), g(x))


def test_compiling_does_not_need_torch_values():
    """Reading a problem compiles its expressions; nothing about that touches a tensor (checked by test_startup)."""
    f = compile_expression("-r*y", "driver", 1000, {"r": 0.01})
    assert f._tensors == {}


# ------------------------------------------------------------------------------ what the syntax tree says
@pytest.mark.parametrize(("text", "rate"), [
    ("-r * y", 0.05), ("-r*y", 0.05), ("-0.05*y", 0.05), ("-(r)*y", 0.05), ("y*(-r)", 0.05), ("-(r * y)", 0.05),
    ("-y * r", 0.05), ("-y / 20", 0.05), ("(0 - r) * y", 0.05), ("-r * y + 0", 0.05), ("-2 * r * y / 2", 0.05),
    ("-y * exp(log(r))", 0.05), ("-r*y - r*y", 0.1), ("r * y", -0.05), ("0", 0.0), ("0 * y", 0.0), ("-(K-K)*y", 0.0),
    ("-r * y + 1", None), ("-r * y * y", None), ("-r * t * y", None), ("-x[0] * y", None), ("-w[0] * y", None),
    ("-r * y + 0 * z[0]", None), ("-r * abs(y)", None), ("1", None), ("-r * y / (K - K)", None),
])
def test_linear_driver_is_read_off_the_text(text, rate):
    f = driver(text)
    assert (f.discount_rate is None) if rate is None else f.discount_rate == pytest.approx(rate, rel=1e-12)


@pytest.mark.parametrize(("text", "c"), [
    ("-0.5 * sum(z ** 2)", 1.0), ("-lam / 2 * sum(z * z)", 3.0), ("-lam * dot(z, z) / 2", 3.0),
    ("-0.5 * lam * norm(z) ** 2", 3.0), ("-(norm(z) * norm(z))", 2.0), ("-mean(z ** 2)", 2.0 / DIM),
    ("-sum(z**2) + dot(w, z) + sum(x * z) + t * z[0] + x[1] + 1", 2.0), ("sum(0.5 * z**2 - z)", -1.0),
    ("-(sum(z ** 2) - sum(z ** 2) / 2)", 1.0), ("-sum(z**2) / dim", 2.0 / DIM),
    ("+(-0.5 * norm(z) ** 2)", 1.0), ("-(+(norm(z) ** 2))", 2.0), ("-(+norm(z)) ** 2", 2.0), ("+sum(+z * z)", -2.0),
    ("-norm(z) * norm(z)", 2.0), ("-norm(-z) ** 2", 2.0), ("-sum((-z) * (-z))", 2.0), ("sum(-z * z) / 2", 1.0),
    ("dot(-z, z)", 2.0), ("-(-norm(z)) * (-norm(z))", 2.0), ("-sum((-z) ** 2) + sum(-z)", 2.0),
    ("-norm(z) * norm(-z)", 2.0), ("(-z)[0] * z[0]", None), ("-norm(z) * z[0]", None), ("sum(-z) * sum(z)", None),
    ("sum(z)", None), ("-0.5 * x[0] * sum(z ** 2)", None), ("norm(z)", None), ("-sum(z ** 2) + y * z[0] ** 2", None),
    ("-sum(z ** 3)", None), ("-sum(abs(z) ** 2)", None), ("-sum(z**2) + norm(z)", None), ("sum(z**2) - sum(z**2)", None),
    ("-(z ** 2)[0]", None), ("-z[0] * z[0]", None), ("-sum(z ** 2 + sum(z ** 2))", None),
])
def test_quadratic_z_is_read_off_the_text(text, c):
    f = driver(text, {**PARAMS, "lam": 3.0})
    assert (f.z_hessian is None) if c is None else f.z_hessian == pytest.approx(c, rel=1e-12)


# Random drivers from a small grammar: whatever the syntax tree claims must hold numerically.
_ATOMS = st.sampled_from(["y", "t", "x[0]", "x[1]", "r", "K", "2", "0.5", "0", "z[0]", "sum(z)", "dot(w, z)",
                          "sum(z**2)", "norm(z)", "mean(z*z)", "dot(z, z)", "sum(x*z)", "norm(-z)", "dot(-z, z)",
                          "sum((-z) * z)", "(-z)[1]", "sum(-z)", "-norm(z)"])


def _combine(children):
    return st.one_of(
        st.tuples(children, st.sampled_from(["+", "-", "*", "/"]), children).map(lambda p: f"({p[0]} {p[1]} {p[2]})"),
        children.map(lambda a: f"-({a})"),
        children.map(lambda a: f"+({a})"),
        children.map(lambda a: f"({a}) ** 2"),
        children.map(lambda a: f"exp({a})"),
    )


EXPRESSIONS = st.recursive(_ATOMS, _combine, max_leaves=6)


@settings(max_examples=150, deadline=None)
@given(EXPRESSIONS)
def test_random_drivers_are_what_the_syntax_tree_says(text):
    f = driver(text)
    gen = torch.Generator().manual_seed(0)
    t, y = torch.rand(16, generator=gen, dtype=torch.float64), torch.randn(16, generator=gen, dtype=torch.float64)
    x, z = (torch.randn(16, DIM, generator=gen, dtype=torch.float64) for _ in range(2))
    value = f(t, x, y, z)
    if not torch.isfinite(value).all():
        return
    if f.discount_rate is not None:
        torch.testing.assert_close(value, -f.discount_rate * y, rtol=1e-9, atol=1e-9)
    if f.z_hessian is not None:
        hessian = torch.autograd.functional.hessian(lambda v: f(t[:1], x[:1], y[:1], v.unsqueeze(0)).sum(), z[0])
        torch.testing.assert_close(hessian, -f.z_hessian * torch.eye(DIM, dtype=torch.float64), rtol=1e-9, atol=1e-9)
    for name, other in (("y", torch.randn(16, dtype=torch.float64)), ("t", torch.rand(16, dtype=torch.float64))):
        if name not in f.names:  # what the text does not mention cannot change the value
            args = {"t": t, "x": x, "y": y, "z": z, name: other}
            torch.testing.assert_close(f(args["t"], x, args["y"], z), value, equal_nan=True)


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(("text", "role", "fragments"), [
    ("x.__class__", "terminal", ("attribute access '.__class__'",)),
    ("x.sum()", "terminal", ("attribute access '.sum'",)),
    ("eval('1')", "terminal", ("unknown function 'eval'",)),
    ("open", "terminal", ("unknown name 'open'",)),
    ("(lambda: 1)()", "terminal", ("call",)),
    ("lambda: 1", "terminal", ("lambda",)),
    ("sum([v for v in x])", "terminal", ("list comprehension",)),
    ("sum({v for v in x})", "terminal", ("set comprehension",)),
    ("sum({v: 1 for v in x})", "terminal", ("dict comprehension",)),
    ("sum(v for v in x)", "terminal", ("generator expression",)),
    ("'abc'", "terminal", ("string",)),
    ("b'abc'", "terminal", ("constant",)),
    ("__import__('os')", "terminal", ("dunder name '__import__'",)),
    ("__builtins__", "terminal", ("dunder name '__builtins__'",)),
    ("x[t]", "driver", ("subscript 'x[t]'", "constant integer")),
    ("x[0.5]", "terminal", ("constant integer",)),
    ("x[1:3]", "terminal", ("constant integer",)),
    ("x[5]", "terminal", ("index 5", "out of range", "dim = 5")),
    ("x[-6]", "terminal", ("index -6", "out of range")),
    ("x[0][0]", "terminal", ("is a number, not a vector",)),
    ("sum(x, axis=0)", "terminal", ("keyword argument 'axis='",)),
    ("sum(**{})", "terminal", ("keyword unpacking",)),
    ("sum(*x)", "terminal", ("starred argument",)),
    ("x +", "terminal", ("syntax error",)),
    ("import os", "terminal", ("syntax error",)),
    ("", "terminal", ("empty expression",)),
    ("x", "terminal", ("is a vector", "one number per path")),
    ("z", "driver", ("is a vector",)),
    ("y", "terminal", ("unknown name 'y' in the terminal",)),
    ("z[0]", "drift", ("unknown name 'z' in the drift",)),
    ("max(x, 1)", "terminal", ("max() takes 1 argument", "maximum(a, b)")),
    ("sum(K)", "terminal", ("sum() needs a vector",)),
    ("where(1, 2, 3)", "terminal", ("needs a comparison",)),
    ("x[0] > 1 and x[1] > 1", "terminal", ("boolean operator 'and'",)),
    ("not x[0]", "terminal", ("operator 'not'",)),
    ("x[0] if K else 1", "terminal", ("conditional expression", "where(c, a, b)")),
    ("x[0] // 2", "terminal", ("operator '//'",)),
    ("x[0] % 2", "terminal", ("operator '%'",)),
    ("x @ x", "terminal", ("operator '@'",)),
    ("x[0] is 1", "terminal", ("comparison 'is'",)),
    ("x[0] in x", "terminal", ("comparison 'in'",)),
    ("True", "terminal", ("constant 'True'",)),
    ("f'{x}'", "terminal", ("f-string",)),
    ("(v := 1)", "terminal", ("assignment expression",)),
    ("[1, 2]", "terminal", ("list",)),
    ("(1, 2)", "terminal", ("tuple",)),
    ("sum", "terminal", ("is a function",)),
    ("1e999999 * 0", "terminal", ()),  # parses as inf * 0: allowed, gives nan at run time
    ("9" * 400, "terminal", ("too large",)),
    ("-" * 500 + "1", "terminal", ("nested",)),
    ("(" * 300 + "1" + ")" * 300, "terminal", ("nested",)),
    (" + ".join(f"x[{i % 3}] ** 2" for i in range(120)), "terminal", ("nested", "write a long sum as sum(x ** 2)")),
    ("x[0]\x00", "terminal", ("null",)),
    ("1" * 20_000, "terminal", ("longer than",)),
])
def test_rejected_forms(text, role, fragments):
    if not fragments:
        compile_expression(text, role, DIM, PARAMS)
        return
    with pytest.raises(ExpressionError) as info:
        compile_expression(text, role, DIM, PARAMS)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize("name", ["x", "dim", "sum", "exp", "lambda", "_K", "__class__", "2K", "K-1", ""])
def test_bad_param_names(name):
    with pytest.raises(ExpressionError):
        check_param_name(name)
    check_param_name("K_2")


def test_param_lists_have_dim_entries():
    with pytest.raises(ExpressionError, match="param 'w' has 2 values, expected a number or dim = 5"):
        compile_expression("sum(x)", "terminal", DIM, {"w": [1.0, 2.0]})


def test_no_eval_or_exec_in_the_module():
    import ast
    import inspect

    import bsde.expressions as module

    tree = ast.parse(inspect.getsource(module))
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert not called & {"eval", "exec", "compile", "__import__"}
    assert math.isfinite(1.0)
