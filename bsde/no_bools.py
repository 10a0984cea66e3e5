"""Numbers are not booleans: pydantic's lax mode reads ``true`` as 1 (or 1.0), so ``iterations: true`` would
run one iteration. Models that inherit :class:`NoBoolNumbers` refuse a boolean wherever a field wants a number
(or a list of numbers); numeric text such as ``1e-3``, which YAML 1.1 reads as a string, still passes."""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ValidationError, model_validator


def _refused(annotation: Any, value: Any) -> bool:
    """Whether no branch of ``annotation`` takes ``value`` for its booleans (items of a list included)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return _refused(args[0], value)
    if origin in (Union, types.UnionType):
        return all(_refused(branch, value) for branch in args)
    if isinstance(value, bool):
        return not (annotation in (bool, Any) or (origin is Literal and any(a is value for a in args)))
    if isinstance(value, list):
        return origin not in (list, tuple) or any(_refused(args[0] if args else Any, item) for item in value)
    return False


def _wants_numbers(annotation: Any) -> bool:
    return annotation in (int, float) or any(_wants_numbers(a) for a in typing.get_args(annotation))


def _list_depth(annotation: Any) -> int:
    """How deeply ``annotation``'s branches nest lists: 0 (numbers), 1 (a list of numbers), 2 (a matrix)."""
    inner = max(map(_list_depth, typing.get_args(annotation)), default=0)
    return inner + 1 if typing.get_origin(annotation) in (list, tuple) else inner


class NoBoolNumbers(BaseModel):
    """Base model whose number fields refuse true and false (see the module docstring).

    Built directly in Python (``HJB(dim=0)``), a bad value is a one-line :class:`bsde.ProblemError` naming the
    key, as from a file; validation from a mapping (``model_validate``, what load_problem uses) is pydantic's.
    """

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            from bsde.problem import direct_error  # the problem module builds on these models

            raise direct_error(type(self), exc, data) from None

    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]  # model_validate does not come here

    @model_validator(mode="before")
    @classmethod
    def _no_bools(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, info in cls.model_fields.items():
                key = info.alias or name
                if key in data and _wants_numbers(info.annotation) and _refused(info.annotation, data[key]):
                    what = ("a number", "a number or a list of numbers",
                            "a number or a matrix (a list of rows of numbers)")[min(_list_depth(info.annotation), 2)]
                    raise ValueError(f"{key}: expected {what}, got {data[key]!r}")
        return data
