"""The dataset row contract (verl layout, Diff-TSM compatible) as an explicit pyarrow schema.

One row per problem::

    data_source   str                                  "tsm/<task>", e.g. "tsm/differentiation"
    prompt        list<struct<role, content>>          [system, user] chat messages
    ability       str                                  "math"
    reward_model  struct<style, ground_truth>          style "rule"; what the task's check uses
    extra_info    struct<split, index, function, answer, function_sympy,
                         answer_sympy, function_type, function_shown>

The fields are task-neutral: every task poses a function f(x) (``function``) and stores one
reference answer (``answer``: f' for differentiation, an antiderivative F for integration).
``function``/``answer`` are LaTeX (Diff-TSM's form), ``*_sympy`` are ``str()`` of the sympy
expressions (checks rebuild expressions from them without parsing LaTeX); ``ground_truth`` is what
the task's ``verify`` takes (the gold f' for differentiation, the integrand f for integration);
``function_shown`` is the surface form of f that the user prompt shows, ``index`` is the row's
position in its split. (Before data format 3 the answer fields were ``derivative``/
``derivative_sympy``.)
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
    pa.field("answer", pa.string(), nullable=False),
    pa.field("function_sympy", pa.string(), nullable=False),
    pa.field("answer_sympy", pa.string(), nullable=False),
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
