"""The shape of an IR tree, node by node: the rule that decides broadcasting.

A leaf's shape comes from the caller (the layer that names it); every node's
shape follows from its operands'.  Entrywise nodes require equal shapes: a row
or a column meets a full matrix only through ``Spread``.  The one exception is
the dense layer's ``Add`` of a bias row, broadcast down the batch as before.
Shapes are pairs of SymPy expressions (symbols m, n or integers), so one reader
serves symbolic and concrete sizes.
"""

from __future__ import annotations

from collections.abc import Mapping

import sympy as sp

from .expr import (
    Activate,
    ActivateDeriv,
    Add,
    Axis,
    Expr,
    Hadamard,
    InvSqrt,
    MatMul,
    Mean,
    Power,
    Scale,
    Spread,
    Sub,
    SumCols,
    SumRows,
    Transpose,
    Var,
)

Shape = tuple[sp.Expr, sp.Expr]
ONE = sp.Integer(1)


class ShapeError(ValueError):
    """Operands whose shapes the node does not accept."""


def _equal(node: str, left: Shape, right: Shape) -> Shape:
    if sp.simplify(left[0] - right[0]) != 0 or sp.simplify(left[1] - right[1]) != 0:
        raise ShapeError(f"{node} of shapes {left} and {right}")
    return left


def shape(expr: Expr, leaves: Mapping[Var, Shape]) -> Shape:
    """(rows, cols) of ``expr``, given the shape of every variable it reads."""
    if isinstance(expr, Var):
        if expr not in leaves:
            raise ShapeError(f"no shape given for {expr.name}")
        return leaves[expr]
    if isinstance(expr, MatMul):
        left, right = shape(expr.left, leaves), shape(expr.right, leaves)
        if sp.simplify(left[1] - right[0]) != 0:
            raise ShapeError(f"product of shapes {left} and {right}")
        return left[0], right[1]
    if isinstance(expr, Add):
        left, right = shape(expr.left, leaves), shape(expr.right, leaves)
        if right[0] == ONE and left[0] != ONE:  # the bias row of a dense layer
            right = (left[0], right[1])
        return _equal("sum", left, right)
    if isinstance(expr, Sub):
        return _equal("difference", shape(expr.left, leaves), shape(expr.right, leaves))
    if isinstance(expr, Hadamard):
        return _equal("entrywise product", shape(expr.left, leaves), shape(expr.right, leaves))
    if isinstance(expr, Transpose):
        rows, cols = shape(expr.arg, leaves)
        return cols, rows
    if isinstance(expr, SumRows):
        return ONE, shape(expr.arg, leaves)[1]
    if isinstance(expr, SumCols):
        return shape(expr.arg, leaves)[0], ONE
    if isinstance(expr, Mean):
        rows, cols = shape(expr.arg, leaves)
        counted = rows if expr.axis is Axis.BATCH else cols
        if sp.simplify(counted - expr.count) != 0:
            raise ShapeError(f"mean of {expr.count} entries over a {counted} long axis")
        return (ONE, cols) if expr.axis is Axis.BATCH else (rows, ONE)
    if isinstance(expr, Spread):
        rows, cols = shape(expr.arg, leaves)
        if expr.axis is Axis.BATCH:
            if rows != ONE:
                raise ShapeError(f"spread down the batch of a {rows}-row matrix")
            return expr.count, cols
        if cols != ONE:
            raise ShapeError(f"spread across the features of a {cols}-column matrix")
        return rows, expr.count
    if isinstance(expr, (Scale, Power, InvSqrt, Activate, ActivateDeriv)):
        return shape(expr.arg, leaves)
    raise ShapeError(f"no shape rule for {type(expr).__name__}")


def constant_along(value: Shape, axis: Axis) -> bool:
    """True when a value of this shape does not vary along ``axis`` (its extent there is 1)."""
    return bool((value[0] if axis is Axis.BATCH else value[1]) == ONE)
