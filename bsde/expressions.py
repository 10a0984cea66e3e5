"""A small, safe expression language for problem files: g(x), f(t, x, y, z), drift(t, x) and sigma(t, x).

The text is parsed with ``ast.parse(mode="eval")``, checked node by node against a whitelist and turned
into a tree of closures over torch operations (vectorised over any leading batch axes, on the input's
dtype and device). Nothing is passed to ``eval`` or ``exec``; torch is imported only when an expression
is evaluated, so reading a problem stays cheap.

Language: numbers; the names ``x`` and ``z`` (vectors of length dim), ``t``, ``y``, ``dim`` and the
problem's params (numbers or lists of dim numbers); ``+ - * / **``, unary minus, comparisons (masks for
``where``, 0/1 elsewhere); ``sum mean max min prod norm`` over the vector, ``dot(a, b)``, elementwise
``maximum minimum abs exp log sqrt relu sin cos tanh where(c, a, b) clip(a, lo, hi)``; ``v[i]`` with a
constant integer i. Which variables an expression may use depends on its role (:data:`ROLES`).
"""

from __future__ import annotations

import ast
import functools
import keyword
import math
import operator
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

from bsde.errors import ProblemError

if TYPE_CHECKING:
    import torch

#: role -> the variables its expressions may use, in the order the callable takes them
ROLES: dict[str, tuple[str, ...]] = {
    "terminal": ("x",),
    "driver": ("t", "x", "y", "z"),
    "drift": ("t", "x"),
    "sigma": ("t", "x"),
}
#: roles whose value is one number per path (the others give a vector, or a number broadcast to one)
SCALAR_ROLES = ("terminal", "driver")
VECTORS = ("x", "z")
MAX_LENGTH = 10_000
MAX_DEPTH = 100
#: what passing MAX_DEPTH says (QA: a flat sum of 120 terms read as "nested": Python nests a chain of + to the left)
TOO_DEEP = (f"nested more than {MAX_DEPTH} levels deep (each operator of a chain such as a + b + c + ... counts: "
            "write a long sum as sum(x ** 2), or dot(w, x ** 2) with a list param w of weights)")


class ExpressionError(ProblemError):
    """An expression is not in the language; the message names the offending piece (the caller adds file and key)."""


# ----------------------------------------------------------------------------------------- the functions
#: reductions over the vector: (..., dim) -> (..., 1)
REDUCTIONS: dict[str, Callable[[Any, Any], Any]] = {
    "sum": lambda torch, v: v.sum(-1, keepdim=True),
    "mean": lambda torch, v: v.mean(-1, keepdim=True),
    "max": lambda torch, v: v.amax(-1, keepdim=True),
    "min": lambda torch, v: v.amin(-1, keepdim=True),
    "prod": lambda torch, v: v.prod(-1, keepdim=True),
    "norm": lambda torch, v: torch.linalg.vector_norm(v, dim=-1, keepdim=True),
}
#: elementwise functions of one argument
UNARY: dict[str, Callable[[Any, Any], Any]] = {
    "abs": lambda torch, a: torch.abs(a),
    "exp": lambda torch, a: torch.exp(a),
    "log": lambda torch, a: torch.log(a),
    "sqrt": lambda torch, a: torch.sqrt(a),
    "relu": lambda torch, a: torch.relu(a),
    "sin": lambda torch, a: torch.sin(a),
    "cos": lambda torch, a: torch.cos(a),
    "tanh": lambda torch, a: torch.tanh(a),
}
#: elementwise functions of several arguments: name -> (arity, implementation)
ELEMENTWISE: dict[str, tuple[int, Callable[..., Any]]] = {
    "maximum": (2, lambda torch, a, b: torch.maximum(a, b)),
    "minimum": (2, lambda torch, a, b: torch.minimum(a, b)),
    "clip": (3, lambda torch, a, lo, hi: torch.minimum(torch.maximum(a, lo), hi)),
    "where": (3, lambda torch, c, a, b: torch.where(c, a, b)),
}
FUNCTIONS = (*REDUCTIONS, "dot", *UNARY, *ELEMENTWISE)

_BINARY = {ast.Add: ("+", operator.add), ast.Sub: ("-", operator.sub), ast.Mult: ("*", operator.mul),
           ast.Div: ("/", operator.truediv), ast.Pow: ("**", operator.pow)}
_OTHER_BINARY = {ast.FloorDiv: "//", ast.Mod: "%", ast.MatMult: "@", ast.LShift: "<<", ast.RShift: ">>",
                 ast.BitOr: "|", ast.BitXor: "^", ast.BitAnd: "&"}
_COMPARE = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
            ast.Eq: operator.eq, ast.NotEq: operator.ne}
_OTHER_COMPARE = {ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in"}
_DESCRIBED = {  # syntax outside the language -> how the error names it
    ast.Lambda: "lambda", ast.ListComp: "list comprehension", ast.SetComp: "set comprehension",
    ast.DictComp: "dict comprehension", ast.GeneratorExp: "generator expression", ast.List: "list",
    ast.Tuple: "tuple", ast.Set: "set", ast.Dict: "dict", ast.JoinedStr: "f-string",
    ast.NamedExpr: "assignment expression", ast.Starred: "starred expression", ast.Slice: "slice",
    ast.IfExp: "conditional expression",
}
_HINTS = {ast.IfExp: " (use where(c, a, b))"}

_PARAM_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


def check_param_name(name: Any) -> None:
    """A param name must be a plain identifier that hides no variable or function; ExpressionError otherwise."""
    if not isinstance(name, str) or not _PARAM_NAME.match(name):
        raise ExpressionError(f"{name!r} is not a name (letters, digits and _, starting with a letter)")
    if keyword.iskeyword(name) or name in ("dim", "t", "x", "y", "z") or name in FUNCTIONS:
        raise ExpressionError(f"'{name}' is reserved (a variable, function or Python keyword); choose another name")


# ----------------------------------------------------------------------------------------- compiled nodes
@dataclass(frozen=True)
class _Node:
    """A compiled piece: ``run(env)`` gives a tensor (..., dim) if ``vector`` else (..., 1) (or a 0-d constant)."""

    run: Callable[[_Env], Any]
    vector: bool
    mask: bool = False
    #: the value, where the piece is a number known when compiling (then torch gets a Python float: its fast paths)
    number: float | None = None


class _Env:
    """What a run sees: torch, the dtype, the variables (per-path numbers with a trailing axis 1), the constants."""

    __slots__ = ("torch", "dtype", "values", "constants")

    def __init__(self, torch: Any, dtype: Any, values: dict[str, Any], constants: tuple[Any, ...]):
        self.torch, self.dtype, self.values, self.constants = torch, dtype, values, constants


def _as_number(node: _Node) -> _Node:
    """A mask used as a number: 1 where true, 0 elsewhere."""
    if not node.mask:
        return node
    run = node.run
    return _Node(lambda env: run(env).to(env.dtype), node.vector)


class _Compiler:
    """One pass over a whitelisted syntax tree: compiled nodes, shapes recorded per syntax node."""

    def __init__(self, text: str, role: str, dim: int, params: Mapping[str, Any]):
        self.text, self.role, self.dim, self.params = text, role, dim, params
        self.allowed = (*ROLES[role], "dim", *params)
        self.constants: list[Any] = []  # float or tuple of dim floats, made tensors at run time
        self.vector: dict[int, bool] = {}  # id(syntax node) -> whether its value is a vector
        self.nodes: dict[int, _Node] = {}  # id(syntax node) -> its compiled piece
        self.depth = 0

    # -------------------------------------------------------------- errors
    def piece(self, node: ast.AST) -> str:
        """The source of ``node``, shortened and quoted, for an error message."""
        return _quote(_short(ast.get_source_segment(self.text, node) or type(node).__name__))

    def not_allowed(self, node: ast.AST, what: str, hint: str = "") -> ExpressionError:
        return ExpressionError(f"{what} {self.piece(node)} is not allowed{hint}")

    # -------------------------------------------------------------- walking
    def constant(self, value: Any) -> Callable[[_Env], Any]:
        index = len(self.constants)
        self.constants.append(value)
        return lambda env: env.constants[index]

    def number(self, value: float) -> _Node:
        """A number known when compiling: a tensor where a function needs one, a float in arithmetic."""
        return _Node(self.constant(value), False, number=value)

    def compile(self, node: ast.AST) -> _Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(TOO_DEEP)
        compiled = self._compile(node)
        compiled = self.fused_squared_norm(node) or compiled
        self.depth -= 1
        self.vector[id(node)] = compiled.vector
        self.nodes[id(node)] = compiled
        return compiled

    def _compile(self, node: ast.AST) -> _Node:
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is not None:
            return method(node)
        what = _DESCRIBED.get(type(node), f"syntax ({type(node).__name__})")
        raise self.not_allowed(node, what, _HINTS.get(type(node), ""))

    def _Constant(self, node: ast.Constant) -> _Node:
        value = node.value
        if isinstance(value, str):
            raise self.not_allowed(node, "string")
        if isinstance(value, bool) or value is None or value is Ellipsis or isinstance(value, (bytes, complex)):
            raise self.not_allowed(node, "constant")
        try:
            number = float(value)
        except OverflowError:
            raise ExpressionError(f"number {self.piece(node)} is too large") from None
        return self.number(number)

    def _Name(self, node: ast.Name) -> _Node:
        name = node.id
        if name.startswith("__") or name.endswith("__"):
            raise self.not_allowed(node, "dunder name")
        if name not in self.allowed:
            if name in FUNCTIONS:
                raise ExpressionError(f"'{name}' is a function: call it, e.g. {name}(x)")
            where = "" if name not in ("t", "x", "y", "z") else f" in the {self.role} (it sees {', '.join(ROLES[self.role])})"
            raise ExpressionError(f"unknown name '{name}'{where} (names here: {', '.join(self.allowed)})")
        if name == "dim":
            return self.number(float(self.dim))
        if name in self.params:
            value = self.params[name]
            return _Node(self.constant(value), True) if isinstance(value, tuple) else self.number(value)
        return _Node(lambda env: env.values[name], name in VECTORS)

    def _UnaryOp(self, node: ast.UnaryOp) -> _Node:
        if isinstance(node.op, ast.Not):
            raise self.not_allowed(node, "operator 'not' in")
        if isinstance(node.op, ast.Invert):
            raise self.not_allowed(node, "operator '~'")
        operand = _as_number(self.compile(node.operand))
        if isinstance(node.op, ast.UAdd):
            return operand
        if operand.number is not None:
            return self.number(-operand.number)
        run = operand.run
        return _Node(lambda env: -run(env), operand.vector)

    def _BinOp(self, node: ast.BinOp) -> _Node:
        if type(node.op) not in _BINARY:
            raise self.not_allowed(node, f"operator '{_OTHER_BINARY.get(type(node.op), '?')}' in")
        left, right = _as_number(self.compile(node.left)), _as_number(self.compile(node.right))
        op, a, b = _BINARY[type(node.op)][1], left.run, right.run
        vector = left.vector or right.vector
        if left.number is not None and right.number is not None:
            folded = _fold(op, left.number, right.number)
            if folded is not None:
                return self.number(folded)
        elif right.number is not None:
            c = right.number
            return _Node(lambda env: op(a(env), c), vector)
        elif left.number is not None:
            c = left.number
            return _Node(lambda env: op(c, b(env)), vector)
        return _Node(lambda env: op(a(env), b(env)), vector)

    def _BoolOp(self, node: ast.BoolOp) -> _Node:
        word = "and" if isinstance(node.op, ast.And) else "or"
        raise self.not_allowed(node, f"boolean operator '{word}' in", " (use where(c, a, b), or multiply comparisons)")

    def _Compare(self, node: ast.Compare) -> _Node:
        for op in node.ops:
            if type(op) not in _COMPARE:
                raise self.not_allowed(node, f"comparison '{_OTHER_COMPARE.get(type(op), '?')}' in")
        operands = [_as_number(self.compile(n)) for n in (node.left, *node.comparators)]
        pairs = [(_COMPARE[type(op)], operands[i].run, operands[i + 1].run) for i, op in enumerate(node.ops)]

        def run(env: _Env) -> Any:
            result = None
            for op, a, b in pairs:  # a < b < c means (a < b) and (b < c)
                mask = op(a(env), b(env))
                result = mask if result is None else env.torch.logical_and(result, mask)
            return result

        return _Node(run, any(o.vector for o in operands), mask=True)

    def _Subscript(self, node: ast.Subscript) -> _Node:
        index = _integer(node.slice)
        if index is None:
            raise ExpressionError(f"subscript {self.piece(node)}: the index must be a constant integer, e.g. x[0] "
                                  "(x[-1] is the last; not dim or a param)")
        value = self.compile(node.value)
        if not value.vector:
            raise ExpressionError(f"subscript {self.piece(node)}: {self.piece(node.value)} is a number, "
                                  f"not a vector")
        if not -self.dim <= index < self.dim:
            raise ExpressionError(f"index {index} in {self.piece(node)} is out of range for a vector of "
                                  f"dim = {self.dim} (valid: {-self.dim} to {self.dim - 1})")
        start = index % self.dim
        run = _as_number(value).run
        return _Node(lambda env: run(env)[..., start:start + 1], False)

    def _Attribute(self, node: ast.Attribute) -> _Node:
        raise ExpressionError(f"attribute access '.{node.attr}' in {self.piece(node)} is not allowed")

    def _Call(self, node: ast.Call) -> _Node:
        if not isinstance(node.func, ast.Name):
            if isinstance(node.func, ast.Attribute):
                return self._Attribute(node.func)
            raise self.not_allowed(node, "call")
        name = node.func.id
        if name not in FUNCTIONS:
            if name.startswith("__") or name.endswith("__"):
                raise self.not_allowed(node.func, "dunder name")
            raise ExpressionError(f"unknown function '{name}' in {self.piece(node)} (functions: {', '.join(FUNCTIONS)})")
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self.not_allowed(arg, "starred argument")
        if node.keywords:
            word = node.keywords[0]
            shown = f"keyword argument '{word.arg}='" if word.arg else "keyword unpacking '**'"
            raise ExpressionError(f"{shown} in {self.piece(node)} is not allowed (arguments go by position)")
        arity = 1 if name in REDUCTIONS or name in UNARY else 2 if name == "dot" else ELEMENTWISE[name][0]
        if len(node.args) != arity:
            hint = f"; {name}imum(a, b) is the elementwise one" if name in ("max", "min") else ""
            raise ExpressionError(f"{name}() takes {arity} argument{'s' * (arity > 1)}, got {len(node.args)} "
                                  f"in {self.piece(node)}{hint}")
        args = [self.compile(arg) for arg in node.args]
        if name in REDUCTIONS or name == "dot":
            for arg, syntax in zip(args, node.args):
                if not arg.vector:
                    raise ExpressionError(f"{name}() needs a vector (x, z or a list param), got the number "
                                          f"{self.piece(syntax)} in {self.piece(node)}")
        if name == "where":
            if not args[0].mask:
                raise ExpressionError(f"where(c, a, b) needs a comparison as c, e.g. where(x[0] > K, a, b); "
                                      f"got {self.piece(node.args[0])}")
            args = [args[0], *map(_as_number, args[1:])]
        else:
            args = [_as_number(a) for a in args]
        runs = [a.run for a in args]
        vector = any(a.vector for a in args)
        if name in REDUCTIONS:
            reduce, (v,) = REDUCTIONS[name], runs
            return _Node(lambda env: reduce(env.torch, v(env)), False)
        if name == "dot":
            a, b = runs
            return _Node(lambda env: (a(env) * b(env)).sum(-1, keepdim=True), False)
        if name in UNARY:
            apply, (a,) = UNARY[name], runs
            return _Node(lambda env: apply(env.torch, a(env)), vector)
        apply = ELEMENTWISE[name][1]
        return _Node(lambda env: apply(env.torch, *(r(env) for r in runs)), vector)

    def fused_squared_norm(self, node: ast.AST) -> _Node | None:
        """|a|^2 as one operation (:mod:`bsde.squared_norm`: one pass backward, where ``(a ** 2).sum()`` makes
        several over a (batch, steps, dim) Z) for ``sum(a ** 2)``, ``sum(a * a)``, ``dot(a, a)`` and ``norm(a) ** 2``
        with a vector a, already compiled the plain way (None for anything else)."""
        operand = _squared_norm_operand(node)
        inner = self.nodes.get(id(operand)) if operand is not None else None
        if inner is None or not inner.vector or inner.mask:
            return None
        run = inner.run
        return _Node(lambda env: _squared_norm()(run(env)).unsqueeze(-1), False)


def _squared_norm_operand(node: ast.AST) -> ast.AST | None:
    """a, where ``node`` is sum(a ** 2), sum(a * a), dot(a, a) or norm(a) ** 2; None otherwise."""
    if _call_of(node, "sum", 1):
        (arg,) = node.args
        if isinstance(arg, ast.BinOp) and ((isinstance(arg.op, ast.Pow) and _is_two(arg.right)) or (
                isinstance(arg.op, ast.Mult) and ast.dump(arg.left) == ast.dump(arg.right))):
            return arg.left
    if _call_of(node, "dot", 2) and ast.dump(node.args[0]) == ast.dump(node.args[1]):
        return node.args[0]
    if (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow) and _is_two(node.right)
            and _call_of(node.left, "norm", 1)):
        return node.left.args[0]
    return None


def _call_of(node: Any, name: str, arity: int) -> bool:
    """Whether ``node`` is the call name(...) with ``arity`` positional arguments and no keywords."""
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name
            and len(node.args) == arity and not node.keywords
            and not any(isinstance(arg, ast.Starred) for arg in node.args))


def _is_two(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and not isinstance(node.value, bool) and node.value == 2


@functools.cache
def _squared_norm() -> Callable[[Any], Any]:
    from bsde.squared_norm import squared_norm  # torch only when an expression runs

    return squared_norm


def _fold(op: Callable[[float, float], Any], a: float, b: float) -> float | None:
    """op(a, b) for two numbers known when compiling, where Python gives a real number (else torch decides)."""
    try:
        value = op(a, b)
    except (ArithmeticError, ValueError):
        return None
    return value if isinstance(value, float) else None


def _integer(node: ast.AST) -> int | None:
    """A constant integer index: 3 or -3 (not True, not 3.0)."""
    sign = 1
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        sign = -1 if isinstance(node.op, ast.USub) else 1
        node = node.operand
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return sign * node.value
    return None


# ----------------------------------------------------------------------------------------- the expression
class Expression:
    """A compiled expression: call it with its role's variables (``ROLES``), torch tensors in and out.

    terminal(x) and driver(t, x, y, z) give (...) for x (..., dim); drift(t, x) and sigma(t, x) give
    (..., dim). t and y broadcast against x's leading axes; t may be a float. Pickles as its text.
    """

    def __init__(self, text: str, role: str, dim: int, params: tuple[tuple[str, Any], ...]):
        if role not in ROLES:
            raise ValueError(f"unknown role '{role}' (known: {', '.join(ROLES)})")
        self.text, self.role, self.dim, self.params = text, role, dim, params
        self.tree = _parse(text)
        compiler = _Compiler(text, role, dim, dict(params))
        try:
            root = compiler.compile(self.tree.body)
        except RecursionError:
            raise ExpressionError(TOO_DEEP) from None
        if role in SCALAR_ROLES and root.vector:
            raise ExpressionError(f"{_quote(_short(text))} is a vector (dim values per path); the {role} must be one "
                                  f"number per path: reduce it, e.g. sum(...), mean(...), max(...) or x[0]")
        self._root = _as_number(root)
        self._vector_nodes = compiler.vector
        self._values = tuple(compiler.constants)
        self._tensors: dict[Any, tuple[Any, ...]] = {}
        mentioned = {n.id for n in ast.walk(self.tree) if isinstance(n, ast.Name)}
        #: the variables the text uses (read off the syntax tree)
        self.names = frozenset(mentioned & set(ROLES[role]))
        #: the params the text uses
        self.param_names = frozenset(mentioned & {name for name, _ in params})

    def __repr__(self) -> str:
        return f"Expression({self.text!r}, role={self.role!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Expression) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    @property
    def _key(self) -> tuple:
        return (self.text, self.role, self.dim, self.params)

    def __reduce__(self) -> tuple:
        return (compile_expression, (self.text, self.role, self.dim, dict(self.params)))

    def uses(self, name: str) -> bool:
        """Whether the text mentions the variable ``name`` (t, x, y or z)."""
        return name in self.names

    # -------------------------------------------------------------- evaluation
    def _constants(self, torch: Any, dtype: Any, device: Any) -> tuple[Any, ...]:
        key = (dtype, device)
        tensors = self._tensors.get(key)
        if tensors is None:
            tensors = self._tensors[key] = tuple(torch.tensor(v, dtype=dtype, device=device) for v in self._values)
        return tensors

    def __call__(self, *args: Any) -> torch.Tensor:
        import torch

        names = ROLES[self.role]
        if len(args) != len(names):
            raise TypeError(f"the {self.role} takes ({', '.join(names)}), got {len(args)} arguments")
        given = dict(zip(names, args))
        x = given["x"]
        dtype, device = x.dtype, x.device
        values, shapes = {}, []
        for name, value in given.items():
            if name in VECTORS:
                shapes.append(value.shape[:-1])
            elif isinstance(value, (int, float)):  # t as a float: one value for every path
                if name in self.names:
                    value = torch.tensor([value], dtype=dtype, device=device)
            else:
                shapes.append(value.shape)
                if name in self.names:
                    value = value.to(dtype=dtype, device=device).unsqueeze(-1)
            values[name] = value
        out = self._root.run(_Env(torch, dtype, values, self._constants(torch, dtype, device)))
        if self.role == "terminal" and "x" not in self.names:
            out = out + 0.0 * x[..., :1]  # g does not depend on x: keep autograd's path from x to g
        shape = (*_broadcast(shapes), 1 if self.role in SCALAR_ROLES else x.shape[-1])
        if out.shape != shape:
            out = out.expand(shape)
        return out.squeeze(-1) if self.role in SCALAR_ROLES else out

    # -------------------------------------------------------------- what the syntax tree says
    @functools.cached_property
    def discount_rate(self) -> float | None:
        """r where the text is exactly -r y with r a constant (0 for the constant 0); None otherwise."""
        form = _y_form(self.tree.body, self._constant_value)
        if form is None:
            return None
        kind, value = form
        if kind == "y":
            return -value + 0.0
        return 0.0 if value == 0.0 else None

    @functools.cached_property
    def z_hessian(self) -> float | None:
        """c where the text is -(c/2)|z|^2 + (terms linear in z), c a nonzero constant; None otherwise."""
        form = _ZForms(self._constant_value, self._vector_nodes, self.dim).form(self.tree.body)
        if form is None or form[0] != "quad" or self._vector_nodes[id(self.tree.body)] or form[1] == 0.0:
            return None
        return -2.0 * form[1]

    def _constant_value(self, node: ast.AST) -> float | None:
        return _constant_value(node, dict(self.params), self.dim)


def _quote(text: str) -> str:
    return f"'{text}'" if "'" not in text else f'"{text}"'


def _broadcast(shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
    """The broadcast of the inputs' batch shapes (torch.broadcast_shapes costs ~70 us a call)."""
    ndim = max(map(len, shapes))
    out = [1] * ndim
    for shape in shapes:
        for i, n in enumerate(shape, ndim - len(shape)):
            if n != 1:
                if out[i] not in (1, n):
                    raise ValueError(f"batch shapes {[tuple(s) for s in shapes]} do not broadcast")
                out[i] = n
    return tuple(out)


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def _parse(text: str) -> ast.Expression:
    if not text.strip():
        raise ExpressionError("empty expression")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression longer than {MAX_LENGTH} characters")
    try:
        return ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        where = f" at column {exc.offset}" if exc.offset else ""
        raise ExpressionError(f"syntax error{where} in {_quote(_short(text.strip()))}: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError) as exc:  # null bytes; absurd nesting
        reason = "nested too deeply" if not isinstance(exc, ValueError) else str(exc)
        raise ExpressionError(f"cannot parse {_quote(_short(text.strip()))}: {reason}") from None


def _freeze(params: Mapping[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    """Params as a hashable, sorted tuple: numbers as floats, lists as tuples of floats."""
    frozen = []
    for name, value in sorted((params or {}).items()):
        frozen.append((name, tuple(float(v) for v in value) if isinstance(value, (list, tuple)) else float(value)))
    return tuple(frozen)


@functools.lru_cache(maxsize=256)
def _compile_cached(text: str, role: str, dim: int, params: tuple[tuple[str, Any], ...]) -> Expression:
    return Expression(text, role, dim, params)


def compile_expression(text: str, role: str, dim: int, params: Mapping[str, Any] | None = None) -> Expression:
    """The compiled expression (cached on its text, role, dim and params); ExpressionError if not in the language.

    ``params`` maps names to numbers or sequences of ``dim`` numbers.
    """
    if not isinstance(text, str):
        raise ExpressionError(f"expected an expression (text), got {type(text).__name__}")
    for name, value in (params or {}).items():
        check_param_name(name)
        if isinstance(value, (list, tuple)) and len(value) != dim:
            raise ExpressionError(f"param '{name}' has {len(value)} values, expected a number or dim = {dim}")
    return _compile_cached(text.strip(), role, int(dim), _freeze(params))


# ----------------------------------------------------------------------------------------- analysis
_MATH = {"abs": abs, "exp": math.exp, "log": math.log, "sqrt": math.sqrt, "relu": lambda a: max(a, 0.0),
         "sin": math.sin, "cos": math.cos, "tanh": math.tanh, "maximum": max, "minimum": min,
         "clip": lambda a, lo, hi: min(max(a, lo), hi)}


def _constant_value(node: ast.AST, params: Mapping[str, Any], dim: int) -> float | None:
    """The number a constant piece of an expression stands for (numbers, number params, dim); None otherwise."""
    try:
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.Name):
            value = float(dim) if node.id == "dim" else params.get(node.id)
            return value if isinstance(value, float) else None
        if isinstance(node, ast.UnaryOp):
            value = _constant_value(node.operand, params, dim)
            return None if value is None else -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp):
            a, b = _constant_value(node.left, params, dim), _constant_value(node.right, params, dim)
            if a is None or b is None:
                return None
            value = _BINARY[type(node.op)][1](a, b)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _MATH:
            args = [_constant_value(arg, params, dim) for arg in node.args]
            if any(a is None for a in args):
                return None
            value = _MATH[node.func.id](*args)
        else:
            return None
    except (ArithmeticError, ValueError):
        return None
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _y_form(node: ast.AST, constant: Callable[[ast.AST], float | None]) -> tuple[str, float] | None:
    """('const', c) if the piece is the constant c, ('y', a) if it is exactly a * y; None otherwise."""
    value = constant(node)
    if value is not None:
        return ("const", value)
    if isinstance(node, ast.Name):
        return ("y", 1.0) if node.id == "y" else None
    if isinstance(node, ast.UnaryOp):
        inner = _y_form(node.operand, constant)
        return None if inner is None else (inner[0], -inner[1] if isinstance(node.op, ast.USub) else inner[1])
    if not isinstance(node, ast.BinOp):
        return None
    left, right = _y_form(node.left, constant), _y_form(node.right, constant)
    if left is None or right is None:
        return None
    (lk, a), (rk, b) = left, right
    if isinstance(node.op, (ast.Add, ast.Sub)):
        b = -b if isinstance(node.op, ast.Sub) else b
        if lk == rk:
            return (lk, a + b)
        if lk == "const" and a == 0.0:
            return (rk, b)
        return (lk, a) if rk == "const" and b == 0.0 else None
    if isinstance(node.op, ast.Mult) and "const" in (lk, rk):
        return ("y" if "y" in (lk, rk) else "const", a * b)
    if isinstance(node.op, ast.Div) and rk == "const" and b != 0.0:
        return (lk, a / b)
    return None


class _ZForms:
    """How a piece depends on z, for reading off f = a |z|^2 + (linear in z) with a constant a.

    Forms: ('free',) no z; ('z',) exactly z and ('-z',) exactly -z; ('lin',) linear in z (coefficients may
    depend on t, x, y); ('norm',) exactly |z| and ('-norm',) exactly -|z|; ('quad', a): a |z|^2 + linear if a
    number per path, a z_i^2 + linear_i if a vector.
    """

    #: the forms that are a sign times z (or |z|), with that sign
    SIGNED = {("z",): 1.0, ("-z",): -1.0}
    NORMS = {("norm",): 1.0, ("-norm",): -1.0}

    def __init__(self, constant: Callable[[ast.AST], float | None], vector: dict[int, bool], dim: int):
        self.constant, self.vector, self.dim = constant, vector, dim

    def is_vector(self, node: ast.AST) -> bool:
        return self.vector.get(id(node), False)

    def form(self, node: ast.AST) -> tuple | None:
        if not any(isinstance(n, ast.Name) and n.id == "z" for n in ast.walk(node)):
            return ("free",)
        if isinstance(node, ast.Name):
            return ("z",)
        if isinstance(node, ast.Subscript):
            return ("lin",) if self.form(node.value) in (("z",), ("-z",), ("lin",)) else None
        if isinstance(node, ast.UnaryOp):
            inner = self.form(node.operand)
            if isinstance(node.op, ast.UAdd) or inner is None:
                return inner
            flipped = {("z",): ("-z",), ("-z",): ("z",), ("norm",): ("-norm",), ("-norm",): ("norm",)}
            return flipped.get(inner) or (("quad", -inner[1]) if inner[0] == "quad" else inner)
        if isinstance(node, ast.BinOp):
            return self.binary(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        return None

    def scale(self, form: tuple, factor: float | None) -> tuple | None:
        if form[0] == "quad":
            return None if factor is None else ("quad", form[1] * factor)
        return ("lin",) if form in self.SIGNED or form == ("lin",) else None

    def product(self, left: tuple, right: tuple) -> tuple | None:
        """(+-z)(+-z) or (+-|z|)(+-|z|): a |z|^2 with a = the product of the signs."""
        for signs in (self.SIGNED, self.NORMS):
            if left in signs and right in signs:
                return ("quad", signs[left] * signs[right])
        return None

    def binary(self, node: ast.BinOp) -> tuple | None:
        left, right = self.form(node.left), self.form(node.right)
        if left is None or right is None:
            return None
        kinds = {left[0], right[0]}
        if isinstance(node.op, (ast.Add, ast.Sub)):
            if kinds & {"norm", "-norm"}:
                return None
            quads = [f for f in (left, right) if f[0] == "quad"]
            if not quads:
                return ("lin",)
            if len(quads) == 2 and self.is_vector(node.left) != self.is_vector(node.right):
                return None
            if any(f[0] == "quad" and not self.is_vector(n) for f, n in ((left, node.left), (right, node.right))) \
                    and self.is_vector(node):
                return None  # a |z|^2 spread over a vector: not the elementwise form
            a = left[1] if left[0] == "quad" else 0.0
            b = right[1] if right[0] == "quad" else 0.0
            return ("quad", a - b if isinstance(node.op, ast.Sub) else a + b)
        if isinstance(node.op, ast.Mult):
            if (square := self.product(left, right)) is not None:
                return square
            if right == ("free",):
                return self.scale(left, self.constant(node.right))
            if left == ("free",):
                return self.scale(right, self.constant(node.left))
            return None
        if isinstance(node.op, ast.Div) and right == ("free",):
            value = self.constant(node.right)
            return self.scale(left, None if not value else 1.0 / value)
        if isinstance(node.op, ast.Pow) and right == ("free",) and self.constant(node.right) == 2.0:
            return ("quad", 1.0) if left in self.SIGNED or left in self.NORMS else None
        return None

    def call(self, node: ast.Call) -> tuple | None:
        name = node.func.id if isinstance(node.func, ast.Name) else ""
        args = [self.form(arg) for arg in node.args]
        if any(a is None for a in args):
            return None
        if name in ("sum", "mean"):
            (arg,) = args
            if arg[0] == "quad":
                return ("quad", arg[1] / (self.dim if name == "mean" else 1)) if self.is_vector(node.args[0]) else None
            return ("lin",) if arg in self.SIGNED or arg == ("lin",) else None
        if name == "norm":
            return ("norm",) if args[0] in self.SIGNED else None
        if name == "dot":
            if (square := self.product(*args)) is not None and args[0] in self.SIGNED:
                return square
            if ("free",) in args and all(a in self.SIGNED or a[0] in ("free", "lin") for a in args):
                return ("lin",)
        return None
