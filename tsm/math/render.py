"""Rendering functions of x as text: LaTeX and plain, and the surface variations shown in prompts.

* :func:`to_latex` is Diff-TSM's ``expr_to_latex``: ``sympy.latex`` with ``\\left``, ``\\right``
  and ``\\big``-family sizing removed (``\\log{(x )}``, ``\\sin^{2}{(x )}``, ``e^{3 x}``).
* :func:`to_plain` is ``str(expr)`` (``x**2*exp(3*x)``), optionally with ``^`` for ``**``.
* :func:`vary_latex` / :func:`vary_plain` / :func:`surface_form` draw a surface variation of a
  function for a prompt, each choice from an explicit :class:`random.Random`. They follow
  Diff-TSM's ``vary_latex_str`` / ``vary_sympy_expr_str`` (LaTeX vs plain, ``^`` vs ``**``,
  ``\\cdot`` vs ``*``, braces vs parentheses, dropped spaces and backslashes), with these fixes
  so that every variation still denotes the same function (tests parse each one back):

  - braces to parentheses first rewrites ``\\frac{A}{B}`` as ``((A)/(B))``: Diff-TSM's
    ``\\frac(A)(B)`` with backslashes dropped reads as a call ``frac(A)`` times ``(B)``;
  - ``^`` to ``**`` and braces to parentheses first move a function power after its argument,
    ``\\sin^{2}{(x )}`` -> ``\\sin{(x )}^{2}``: ``\\sin**(2)((x ))`` has no agreed reading;
  - dropping backslashes turns ``\\cdot`` into ``*`` (Diff-TSM deleted it, so
    ``2\\cdot3^{x}`` became ``23^{x}``) and puts a space between a letter and the command
    name that follows it (``x\\sin`` -> ``x sin``, not the word ``xsin``);
  - a space is never dropped between two digits (``2 3`` would become ``23``) nor after a
    command name followed by a letter (``\\pi x`` would become the unknown ``\\pix``).

  The stored gold answer never goes through these: only the prompt's copy of f varies.

* :func:`clean_form` (``surface="clean"``, ``data.surface``): only forms people type. Diff-TSM's
  variations also give ``x**{4}`` (``**`` inside LaTeX braces), ``xe**{x}`` (a dropped space that
  glues two symbols into one word) and ``\\cos((((x)/(4))))`` (braces turned into parentheses);
  the clean style draws the LaTeX as rendered, with tightened brackets or with spaces dropped only
  where no two letters meet, or the plain form with ``^`` or ``**`` and the same space rule.
"""

from __future__ import annotations

import random
import re

import sympy

_SIZING = re.compile(r"\\(?:[Bb]ig[lr]?|[Ll]eft|[Rr]ight)(?![A-Za-z])")
_FUNC_POWER = re.compile(r"\\([A-Za-z]+)\^\{")


#: how inverse trig/hyperbolic functions are written: ``\\arcsin`` / ``\\operatorname{arccot}``
#: ("full", the default), ``\\sin^{-1}`` ("power"), ``\\operatorname{asin}`` ("abbreviated").
INVERSE_STYLES = ("full", "power", "abbreviated")
_INVERSE_FUNCS = (sympy.asin, sympy.acos, sympy.atan, sympy.acot, sympy.asec, sympy.acsc, sympy.asinh,
                  sympy.acosh, sympy.atanh, sympy.acoth, sympy.asech, sympy.acsch)


def to_latex(expr: sympy.Expr, inverse_style: str = "full") -> str:
    """``sympy.latex`` without ``\\left``/``\\right``/``\\big`` sizing (Diff-TSM's form); inverse
    trig in textbook notation (``\\arcsin``; Diff-TSM's functions have none)."""
    if inverse_style not in INVERSE_STYLES:
        raise ValueError(f"inverse_style must be one of {INVERSE_STYLES}, got {inverse_style!r}")
    return _SIZING.sub("", sympy.latex(expr, inv_trig_style=inverse_style))


def has_inverse(expr: sympy.Expr) -> bool:
    """Whether ``expr`` has an inverse trig or hyperbolic function (notations vary for those)."""
    return expr.has(*_INVERSE_FUNCS)


def to_plain(expr: sympy.Expr, caret: bool = False) -> str:
    """``str(expr)``; with ``caret=True`` powers are written ``^`` instead of ``**``."""
    text = str(expr)
    return text.replace("**", "^") if caret else text


def _group_end(text: str, start: int) -> int:
    """Index just past the brace group opening at ``text[start] == '{'``."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i + 1
    raise ValueError(f"unbalanced braces in {text!r}")


def _frac_to_slash(text: str) -> str:
    """``\\frac{A}{B}`` -> ``((A)/(B))``, innermost parts rewritten too."""
    out, i = [], 0
    while True:
        j = text.find("\\frac{", i)
        if j < 0:
            out.append(text[i:])
            return "".join(out)
        a_end = _group_end(text, j + 5)
        if a_end >= len(text) or text[a_end] != "{":
            out.append(text[i:a_end])
            i = a_end
            continue
        b_end = _group_end(text, a_end)
        num = _frac_to_slash(text[j + 6:a_end - 1])
        den = _frac_to_slash(text[a_end + 1:b_end - 1])
        out.append(f"{text[i:j]}(({num})/({den}))")
        i = b_end


def _power_after_argument(text: str) -> str:
    """``\\sin^{2}{(x )}`` -> ``\\sin{(x )}^{2}`` (the same function, no prefix power). The
    inverse ``\\sin^{-1}{(x )}`` (arcsin) stays: after its argument it would mean 1/sin."""
    start = 0
    while True:
        m = _FUNC_POWER.search(text, start)
        if m is None:
            return text
        pow_end = _group_end(text, m.end() - 1)
        if text[m.end() - 1:pow_end] == "{-1}":
            start = pow_end
            continue
        if pow_end >= len(text) or text[pow_end] != "{":
            return text  # not a function power followed by its argument: leave it
        arg_end = _group_end(text, pow_end)
        power = text[m.end() - 1:pow_end]
        text = f"{text[:m.start()]}\\{m.group(1)}{text[pow_end:arg_end]}^{power}{text[arg_end:]}"


def _droppable(before: str, after: str, keep_words: bool = False) -> bool:
    """Whether a space between ``before`` (all text kept so far) and ``after`` can go
    (``keep_words``: never between two letters, which would glue ``x e`` into ``xe``)."""
    last, nxt = before[-1:], after[:1]
    if last.isdigit() and nxt.isdigit():
        return False
    if keep_words and last.isalpha() and nxt.isalpha():
        return False
    if nxt.isalpha():
        word = len(before) - len(before.rstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"))
        if word and before[-word - 1:-word] == "\\":
            return False
    return True


def _drop_spaces(text: str, rng: random.Random | None, prob: float = 1.0, keep_words: bool = False) -> str:
    """Drop each space with probability ``prob`` (all when ``rng`` is None) where allowed."""
    out: list[str] = []
    for i, c in enumerate(text):
        if c == " " and _droppable("".join(out[-12:]), text[i + 1:i + 2], keep_words) and (
                rng is None or rng.random() < prob):
            continue
        out.append(c)
    return "".join(out)


def _drop_backslashes(text: str) -> str:
    text = text.replace("\\cdot", "*")
    out = []
    for i, c in enumerate(text):
        if c == "\\":
            if out and out[-1].isalpha():
                out.append(" ")
            continue
        out.append(c)
    return "".join(out)


def vary_latex(latex: str, rng: random.Random) -> str:
    """A random surface variation of a LaTeX string from :func:`to_latex` (see module doc)."""
    use_stars = rng.random() < 0.5
    use_star_dot = rng.random() < 0.5
    use_parens = rng.random() < 0.5
    if use_stars or use_parens:
        latex = _power_after_argument(latex)
    if use_stars:
        latex = latex.replace("^", "**")
    if use_star_dot:
        latex = latex.replace("\\cdot", "*")
    if use_parens:
        latex = _frac_to_slash(latex).replace("{", "(").replace("}", ")")
    if rng.random() < 0.5:  # tighten brackets
        for pad, tight in (("( ", "("), (" )", ")"), ("{ ", "{"), (" }", "}")):
            latex = latex.replace(pad, tight)
    latex = _drop_spaces(latex, rng, 0.5)
    if rng.random() < 0.1:
        latex = latex.replace("  ", " ")
    if rng.random() < 0.05:
        latex = _drop_spaces(latex, None)
    if rng.random() < 0.5:
        latex = _drop_backslashes(latex)
    return latex


def vary_plain(plain: str, rng: random.Random) -> str:
    """A random surface variation of ``str(expr)``: ``^`` for ``**``, dropped spaces."""
    if rng.random() < 0.5:
        plain = plain.replace("**", "^")
    plain = _drop_spaces(plain, rng, 0.5)
    if rng.random() < 0.1:
        plain = plain.replace(" ", "")
    return plain


SURFACE_STYLES = ("diff_tsm", "clean")


def clean_form(expr: sympy.Expr, rng: random.Random, latex: str | None = None) -> str:
    """LaTeX or plain (even odds) in a form people type (see the module doc)."""
    if rng.random() < 0.5:
        text = latex if latex is not None else to_latex(expr)
        if rng.random() < 0.5:
            for pad, tight in (("( ", "("), (" )", ")"), ("{ ", "{"), (" }", "}")):
                text = text.replace(pad, tight)
        if rng.random() < 0.5:
            text = _drop_spaces(text, None, keep_words=True)
        return text
    text = to_plain(expr, caret=rng.random() < 0.5)
    return _drop_spaces(text, None, keep_words=True) if rng.random() < 0.5 else text


def surface_form(expr: sympy.Expr, rng: random.Random, latex: str | None = None,
                 style: str = "diff_tsm") -> str:
    """LaTeX or plain (even odds) with a random variation; ``latex`` skips re-rendering.
    ``style="clean"``: :func:`clean_form`; ``"diff_tsm"``: Diff-TSM's variations (the default)."""
    if style == "clean":
        return clean_form(expr, rng, latex)
    if style != "diff_tsm":
        raise ValueError(f"surface style must be one of {SURFACE_STYLES}, got {style!r}")
    if rng.random() < 0.5:
        return vary_latex(latex if latex is not None else to_latex(expr), rng)
    return vary_plain(to_plain(expr), rng)
