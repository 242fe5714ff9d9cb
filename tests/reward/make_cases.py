"""Build the labelled reward suite ``tests/reward/cases.jsonl`` (committed; rerun to refresh).

    python tests/reward/make_cases.py

Each line: ``{"response", "ground_truth", "correct", "kind"}``. Labels come from sympy, not from
the verifier under test: right answers are sympy rewrites of the gold (expand, factor, together,
trig/exp rewrites, LaTeX and plain renderings, with and without prefixes), and every generated
wrong answer is checked to differ from the gold by sympy's own high-precision evaluation at a
point where the gold is real. Hand-written cases cover Diff-TSM's and math-verify's holes.
"""
from __future__ import annotations

import cmath
import json
import random
import re
from pathlib import Path

import sympy as sp

x = sp.Symbol("x")
HERE = Path(__file__).parent
REFERENCE = Path("/work/shared/diff_tsm_reference/sample_simplicity_05.jsonl")
CHECK_POINTS = [sp.Rational(7, 10), sp.Rational(13, 10), sp.Rational(29, 10), sp.Rational(-6, 10),
                sp.Rational(-37, 10), sp.Rational(61, 3), sp.Rational(1, 7)]


def differs(a: sp.Expr, b: sp.Expr) -> bool:
    """True if a and b differ by > 1e-12 relative at a point where b is real (sympy evalf)."""
    for p in CHECK_POINTS:
        try:
            vb = complex(b.subs(x, p).evalf(40))
            va = complex(a.subs(x, p).evalf(40))
        except (TypeError, ValueError, OverflowError):
            continue
        if abs(vb.imag) > 1e-12 * max(1.0, abs(vb)) or cmath.isnan(vb) or cmath.isinf(vb):
            continue
        if abs(va - vb) > 1e-12 * max(abs(va), abs(vb)):
            return True
    return False


def humanize(latex: str) -> str:
    """How a person (or model) writes sympy's LaTeX: no \\left/\\right, \\ln, tighter spacing."""
    s = re.sub(r"\\left|\\right", "", latex)
    for _ in range(4):  # innermost first: {(arg )} -> (arg) when arg has no groups of its own
        s = re.sub(r"\{\(([^{}()]*?) ?\)\}", r"(\1)", s)
    s = s.replace("\\log", "\\ln").replace(" \\cdot ", " \\cdot ")
    return re.sub(r"\s+", " ", s).strip()


def boxed(ans: str, prefix: str = "") -> str:
    return f"Differentiating term by term, we get\n\\boxed{{{prefix}{ans}}}"


def rewrites(d: sp.Expr) -> list[sp.Expr]:
    out = []
    for fn in (sp.expand, sp.factor, sp.together, lambda e: e.rewrite(sp.exp),
               lambda e: sp.expand_trig(e), sp.powsimp, lambda e: e.rewrite(sp.cos)):
        try:
            r = fn(d)
        except Exception:  # noqa: BLE001, S112 - a rewrite sympy cannot do is just skipped
            continue
        if r != d and not r.has(sp.I) and len(str(r)) < 400 and not differs(r, d):
            out.append(r)
    return out


def swap_sin_cos(e: sp.Expr) -> sp.Expr:
    tmp = sp.Function("tmp")
    return e.replace(sp.sin, tmp).replace(sp.cos, sp.sin).replace(tmp, sp.cos)


def off_by_one(e: sp.Expr) -> sp.Expr | None:
    ints = sorted({a for a in e.atoms(sp.Integer) if abs(a) > 1}, key=abs)
    return e.xreplace({ints[-1]: ints[-1] + 1}) if ints else None


def wrongs(f: sp.Expr, d: sp.Expr) -> list[tuple[str, sp.Expr]]:
    cands = [("sign_flip", -d), ("f_itself", f), ("tiny_term", d + sp.Rational(1, 10**9) * x),
             ("sin_cos_swap", swap_sin_cos(d)), ("off_by_one", off_by_one(d)),
             ("scaled", 2 * d), ("plus_one", d + 1)]
    return [(k, c) for k, c in cands if c is not None and differs(c, d)]


def template_functions(rng: random.Random, n: int) -> list[tuple[sp.Expr, sp.Expr, sp.Expr]]:
    """(f, f', f' with the chain factor missing) for one-layer compositions."""
    outer = [sp.sin, sp.cos, sp.exp, sp.log, sp.tan, sp.sqrt, sp.sinh, sp.atan]
    out = []
    for _ in range(n):
        a, b, c = rng.choice([2, 3, 5, -4, 7]), rng.choice([2, 3, -5, 6]), rng.randint(-9, 9)
        g = rng.choice([b * x + c, b * x**2 + c, b * x**3 + c * x])
        o = rng.choice(outer)
        f = a * o(g)
        d = sp.diff(f, x)
        no_chain = a * sp.diff(o(x), x).subs(x, g)
        out.append((f, d, no_chain))
    return out


def main() -> None:
    rng = random.Random(7)
    cases: list[dict] = []

    def add(response: str, gt: str, correct: bool, kind: str) -> None:
        cases.append({"response": response, "ground_truth": gt, "correct": correct, "kind": kind})

    # 1. Diff-TSM's own rows: gold is its LaTeX; answers in many renderings.
    rows = [json.loads(line) for line in REFERENCE.read_text().splitlines()]
    rows = [r for r in rows if " i " not in r["function"]]
    from tsm.math.parse import parse_expression  # only to read the reference LaTeX into sympy

    for row in rng.sample(rows, 36):
        f, d = parse_expression(row["function"]), parse_expression(row["derivative"])
        gt = row["derivative"]
        add(boxed(sp.latex(d)), gt, True, "latex")
        add(boxed(str(d)), gt, True, "plain")
        add(boxed(humanize(sp.latex(d)), "f'(x) = "), gt, True, "prefix_human")
        for r in rewrites(d)[:2]:
            add(boxed(sp.latex(r)), gt, True, "rewrite_latex")
        for k, w in wrongs(f, d)[:4]:
            add(boxed(sp.latex(w)), gt, False, k)
        add(boxed(f"\\frac{{d}}{{dx}}\\left({row['function']}\\right)"), gt, False, "restated")

    # 2. Our own golds (plain sympy strings), with chain-rule slips.
    for f, d, no_chain in template_functions(rng, 30):
        gt = str(d)
        add(boxed(sp.latex(d), "\\frac{dy}{dx} = "), gt, True, "prefix_latex")
        add(boxed(str(d).replace("**", "^"), "y' = "), gt, True, "prefix_caret")
        for r in rewrites(d)[:2]:
            add(boxed(str(r)), gt, True, "rewrite_plain")
        if differs(no_chain, d):
            add(boxed(sp.latex(no_chain)), gt, False, "missing_chain")
        for k, w in wrongs(f, d)[:3]:
            add(boxed(str(w)), gt, False, k)

    # 3. Hand-written holes of Diff-TSM's reward and of math-verify.
    tiny_gold = "-20*exp(-20*x - 39)"
    holes = [
        ("\\boxed{10^{-30}x}", tiny_gold, False, "tiny_gold"),
        ("\\boxed{0}", tiny_gold, False, "tiny_gold"),
        ("\\boxed{x^2 = 2x}", "2*x", False, "last_equals"),
        ("\\boxed{2x + |x-2| + x - 2}", "2*x", False, "piecewise"),
        ("\\boxed{\\log_{10}x + 1}", "log(x) + 1", False, "log_base"),
        ("\\boxed{2*x + sqrt(x)}", "2*x", False, "truncation"),
        ("\\boxed{\\frac{d}{dx}x^2}", "2*x", False, "leftover_ddx"),
        ("The answer is 2x.", "2*x", False, "unboxed"),
        ("\\boxed{2x + C}", "2*x", False, "plus_c"),
        ("\\boxed{\\int 2 \\, dx}", "2*x", False, "integral"),
        ("\\boxed{\\lim_{h \\to 0} \\frac{(x+h)^2 - x^2}{h}}", "2*x", False, "limit"),
        ("\\boxed{2y}", "2*x", False, "other_symbol"),
        ("\\boxed{" + " + ".join(["x"] * 3000) + "}", "3000", False, "huge"),
        ("\\boxed{10^{10^{10}}}", "2*x", False, "tower"),
        ("\\boxed{2x} \\boxed{3x}", "2*x", False, "last_box"),
        ("\\boxed{2x", "2*x", False, "unbalanced"),
        ("\\boxed{\\ln x + 1}", "log(x) + 1", True, "ln"),
        ("\\boxed{\\frac{1}{2\\sqrt x}}", "1/(2*sqrt(x))", True, "sqrt_unbraced"),
        ("\\boxed{\\mathrm{e}^{3x}\\cdot 3}", "3*exp(3*x)", True, "mathrm_e"),
        ("\\boxed{3exp(3x)}", "3*exp(3*x)", True, "plain_exp"),
        ("\\boxed{3e^{3x}}", "3*exp(3*x)", True, "e_power"),
        ("\\boxed{\\dfrac{dy}{dx} = 2\\sin x\\cos x}", "sin(2*x)", True, "dfrac_prefix"),
        ("\\boxed{\\sin 2x}", "2*sin(x)*cos(x)", True, "sin_unbraced"),
        ("\\boxed{\\frac{d}{dx}\\left(x^2\\right) = 2x}", "2*x", True, "restated_prefix"),
        ("\\boxed{2x\\sin x + x^2\\cos x}", "2*x*sin(x) + x**2*cos(x)", True, "implicit"),
        ("\\boxed{\\frac12 x^{-1/2}}", "1/(2*sqrt(x))", True, "frac12"),
        ("\\boxed{\\frac{1}{3\\sqrt[3]{x^2}}}", "1/(3*x**(2/3))", True, "cube_root"),
        ("\\boxed{\\sec^2 x}", "tan(x)**2 + 1", True, "sec2"),
        ("\\boxed{\\frac{1}{1+x^2}}", "1/(x**2 + 1)", True, "atan"),
        ("\\boxed{\\frac{1}{\\sqrt{1-x^2}}}", "1/sqrt(1 - x**2)", True, "asin_domain"),
        ("\\boxed{\\frac{x}{|x|}}", "sign(x)", True, "abs"),
        ("\\boxed{-\\frac{2}{-2x-31}}", "2/(2*x + 31)", True, "neg_frac"),
        ("\\boxed{40\\operatorname{sech}^2(40x+3)}", "40 - 40*tanh(40*x + 3)**2", True, "tanh_sat"),
        ("\\boxed{\\sin^2 x + \\cos^2 x - 1}", "0", True, "zero_identity"),
        ("\\boxed{10^{-60}}", "0", False, "zero_tiny"),
        ("\\boxed{2x + 10^{-40}x}", "2*x", False, "tiny_40"),
        ("\\boxed{2x.}", "2*x", True, "trailing_period"),
        ("\\boxed{2 \\cdot x}", "2*x", True, "cdot"),
        ("\\boxed{(x+1)(x-1)}", "x**2 - 1", True, "product"),
        ("\\boxed{e^{x}(x+1)}", "x*exp(x) + exp(x)", True, "exp_factored"),
    ]
    for r, g, c, k in holes:
        add(r, g, c, k)

    path = HERE / "cases.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in cases))
    n_right = sum(c["correct"] for c in cases)
    print(f"wrote {len(cases)} cases ({n_right} right, {len(cases) - n_right} wrong) to {path}")


if __name__ == "__main__":
    main()
