"""The dataset row contract (verl layout, Diff-TSM compatible) as an explicit pyarrow schema.

One row per problem::

    data_source   str                                  "tsm/differentiation"
    prompt        list<struct<role, content>>          [system, user] chat messages
    ability       str                                  "math"
    reward_model  struct<style, ground_truth>          style "rule"; ground_truth = str(f')
    extra_info    struct<split, index, function, derivative, function_sympy,
                         derivative_sympy, function_type, function_shown>

``function``/``derivative`` are LaTeX (Diff-TSM's form), ``*_sympy`` are ``str()`` of the sympy
expressions (the reward rebuilds the gold answer from them without parsing LaTeX),
``function_shown`` is the surface form of f that the user prompt shows, ``index`` is the row's
position in its split.
"""

from __future__ import annotations

import pyarrow as pa

MESSAGE = pa.struct([pa.field("role", pa.string(), nullable=False),
                     pa.field("content", pa.string(), nullable=False)])
REWARD_MODEL = pa.struct([pa.field("style", pa.string(), nullable=False),
                          pa.field("ground_truth", pa.string(), nullable=False)])
EXTRA_INFO = pa.struct([
    pa.field("split", pa.string(), nullable=False),
    pa.field("index", pa.int64(), nullable=False),
    pa.field("function", pa.string(), nullable=False),
    pa.field("derivative", pa.string(), nullable=False),
    pa.field("function_sympy", pa.string(), nullable=False),
    pa.field("derivative_sympy", pa.string(), nullable=False),
    pa.field("function_type", pa.string(), nullable=False),
    pa.field("function_shown", pa.string(), nullable=False),
])
SCHEMA = pa.schema([
    pa.field("data_source", pa.string(), nullable=False),
    pa.field("prompt", pa.list_(pa.field("item", MESSAGE, nullable=False)), nullable=False),
    pa.field("ability", pa.string(), nullable=False),
    pa.field("reward_model", REWARD_MODEL, nullable=False),
    pa.field("extra_info", EXTRA_INFO, nullable=False),
])


def to_table(rows: list[dict]) -> pa.Table:
    """Rows (dicts in the contract's shape) as a table with exactly :data:`SCHEMA`.

    Raises ``ValueError`` on a null in a non-nullable top-level column (``from_pylist`` would
    store it silently).
    """
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    for field, column in zip(SCHEMA, table.columns):
        if not field.nullable and column.null_count:
            raise ValueError(f"column {field.name!r} has {column.null_count} null value(s)")
    return table
