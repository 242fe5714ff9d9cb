"""Dataset generation speed: accepted examples per second per core, ours vs Diff-TSM's procedure.

    python experiments/data_speed/bench.py [--n 1500] [--peer-n 200]

Each measurement runs in its own fresh single-threaded subprocess (one core; sympy caches start
cold, as in a real build's worker), drawing candidates 0..n-1 exactly as a build does
(``tsm.data.build.generate_candidate``: sample, filter, differentiate, render LaTeX, pose the
prompt). It reports accepted examples per CPU-second (``process_time``: robust to other
processes sharing the machine) and per wall-second, and the rejection rate, at simplicity 0.5,
0.0 and 1.0, for ``simplify=fast`` (the default) and ``exact``.

The peer is a faithful re-implementation of Diff-TSM's per-example procedure
(``tslm/data.py: generate_differentiation_example``): template strings through ``sympify``,
random trees with its ``is_finite`` (including the ``is_infinite`` query) after every step,
``simple_simplify`` (three rounds of logcombine, signsimp, collect, rcollect, trigsimp,
exptrigsimp, powsimp), ``is_valid_expression`` as a ``has()`` over its forbidden-class list,
``sympy.diff``, ``sympy.latex`` with the sizing regexes, the length filter. It runs in the same
invocation, so the ratio compares like with like on the same machine state.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import time

# ----------------------------------------------------------------------------- the peer

_FORBIDDEN_NAMES = (  # Diff-TSM's tslm/utils/sympy.py list, by name
    "Rel", "BooleanFunction", "Derivative", "Integral", "Lambda", "Sum", "Product", "Limit",
    "Subs", "Min", "Max", "DiracDelta", "Heaviside", "SingularityFunction", "WildFunction", "Set",
    "factorial", "factorial2", "rf", "ff", "binomial", "RisingFactorial", "FallingFactorial",
    "subfactorial", "carmichael", "fibonacci", "lucas", "motzkin", "tribonacci", "harmonic",
    "bernoulli", "bell", "euler", "catalan", "genocchi", "andre", "partition", "conjugate", "arg",
    "polar_lift", "periodic_argument", "principal_branch", "floor", "ceiling", "frac",
    "Piecewise", "erf", "erfc", "erfi", "erf2", "erfinv", "erfcinv", "erf2inv", "Ei", "expint",
    "E1", "li", "Li", "Si", "Ci", "Shi", "Chi", "fresnels", "fresnelc", "gamma", "lowergamma",
    "uppergamma", "polygamma", "loggamma", "digamma", "trigamma", "multigamma", "dirichlet_eta",
    "zeta", "lerchphi", "polylog", "stieltjes", "Eijk", "LeviCivita", "KroneckerDelta", "besselj",
    "bessely", "besseli", "besselk", "hankel1", "hankel2", "jn", "yn", "hn1", "hn2", "airyai",
    "airybi", "airyaiprime", "airybiprime", "marcumq", "hyper", "meijerg", "appellf1", "legendre",
    "assoc_legendre", "hermite", "hermite_prob", "chebyshevt", "chebyshevu", "chebyshevu_root",
    "chebyshevt_root", "laguerre", "assoc_laguerre", "gegenbauer", "jacobi", "Ynm", "Ynm_c",
    "Znm", "elliptic_k", "elliptic_f", "elliptic_e", "elliptic_pi", "beta", "mathieus",
    "mathieuc", "mathieusprime", "mathieucprime", "riemann_xi", "betainc", "betainc_regularized",
)


class DiffTSMPeer:
    """Diff-TSM's generate_differentiation_example, re-implemented for timing (own code)."""

    def __init__(self, simplicity: float, max_coefficient: int = 40, max_power: int = 5,
                 max_length: int = 100):
        import sympy
        import sympy.logic.boolalg

        from tsm.math.sampling import BINARY_WEIGHTS, TEMPLATE_TYPES, TEMPLATES, UNARY_WEIGHTS

        self.sp = sympy
        self.x = sympy.Symbol("x")
        self.simplicity, self.max_length = simplicity, max_length
        self.max_coefficient, self.max_power = max_coefficient, max_power
        self.families = TEMPLATE_TYPES
        self.texts = {f: [t for fam, t, _ in TEMPLATES if fam == f] for f in TEMPLATE_TYPES}
        self.unary = list(UNARY_WEIGHTS.items())
        self.binary = list(BINARY_WEIGHTS.items())
        found = (sympy.logic.boolalg.BooleanFunction if n == "BooleanFunction" else
                 getattr(sympy, n, None) for n in _FORBIDDEN_NAMES)
        self.forbidden = tuple(c for c in found if isinstance(c, type))

    def finite(self, f) -> bool:
        sp = self.sp
        return not (f.has(sp.nan, sp.oo, sp.zoo) or f.is_infinite)

    def simple_simplify(self, f):
        sp, x = self.sp, self.x
        for _ in range(3):
            f = sp.logcombine(f)
            f = sp.signsimp(f)
            f = sp.collect(f, x)
            f = sp.rcollect(f, x)
            f = sp.trigsimp(f)
            f = sp.exptrigsimp(f)
            f = sp.powsimp(f)
        return f

    def binop(self, rng, a, b):
        name = rng.choices([n for n, _ in self.binary], weights=[w for _, w in self.binary])[0]
        out = {"add": lambda: a + b, "mul": lambda: a * b, "sub": lambda: a - b,
               "div": lambda: a / b, "pow": lambda: a**b}[name]()
        return out if self.finite(out) else a

    def unop(self, rng, f):
        sp = self.sp
        name = rng.choices([n for n, _ in self.unary], weights=[w for _, w in self.unary])[0]
        if name == "combine":
            out = self.binop(rng, f, rng.randint(-5, 5))
        elif name == "inverse":
            out = 1 / f
        elif name == "square":
            out = f**2
        else:
            out = getattr(sp, name)(f)
        return out if self.finite(out) else f

    def tree(self, rng, depth=0):
        x = self.x
        if depth >= 4 or rng.random() < 0.2:
            return x
        if rng.random() < 0.4:
            f = self.tree(rng, depth + 1)
            return self.unop(rng, f) if x in f.free_symbols else f
        f1, f2 = self.tree(rng, depth + 1), self.tree(rng, depth + 1)
        return self.binop(rng, f1, f2) if (x in f1.free_symbols or x in f2.free_symbols) else f1

    def latex(self, f) -> str:
        text = self.sp.latex(f)
        for pattern in (r"\\[Bb]ig[lr]?", r"\\[Ll]eft[lr]?", r"\\[Rr]ight[lr]?"):
            text = re.sub(pattern, "", text)
        return text

    def example(self, rng) -> dict | None:
        sp = self.sp
        if rng.random() < self.simplicity:
            family = rng.choice(self.families)
            text = rng.choice(self.texts[family])
            params = {k: rng.randint(-self.max_coefficient, self.max_coefficient) for k in "abcd"}
            params.update({k: rng.randint(1, self.max_power) for k in "nmo"})
            f = self.simple_simplify(sp.sympify(text.format(**params)))
        else:
            family = "composite-complex"
            try:
                f = self.simple_simplify(self.tree(rng))
            except Exception:  # noqa: BLE001  (Diff-TSM drops any failing draw)
                return None
            if not self.finite(f):
                return None
        if f.has(*self.forbidden) or not self.finite(f):
            return None
        try:
            d = sp.diff(f, self.x)
            if d.has(*self.forbidden) or not self.finite(d):
                return None
            f_latex, d_latex = self.latex(f), self.latex(d)
            if len(f_latex) > self.max_length or len(d_latex) > self.max_length:
                return None
            return {"function_type": family, "function": f_latex, "derivative": d_latex}
        except Exception:  # noqa: BLE001  (as Diff-TSM)
            return None


# ----------------------------------------------------------------------------- measurements


def measure(kind: str, simplicity: float, n: int) -> dict:
    """Run in a fresh process: candidates 0..n-1, one core."""
    if kind == "peer":
        peer = DiffTSMPeer(simplicity)

        def one(i: int) -> bool:
            return peer.example(random.Random(i)) is not None
    else:
        from tsm.data.build import DatasetSpec, _task_args, generate_candidate

        args = _task_args(DatasetSpec(simplicity=simplicity, simplify=kind))

        def one(i: int) -> bool:
            return generate_candidate((args, i))[0] == "ok"

    one(10**9)  # imports and first-call setup are not per-example cost
    wall, cpu = time.perf_counter(), time.process_time()
    accepted = sum(one(i) for i in range(n))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"kind": kind, "simplicity": simplicity, "n": n, "accepted": accepted,
            "per_cpu_s": accepted / cpu, "per_wall_s": accepted / wall,
            "ms_per_accepted_cpu": 1000 * cpu / max(1, accepted), "rejection": 1 - accepted / n}


def run_child(kind: str, simplicity: float, n: int) -> dict:
    env_cmd = [sys.executable, __file__, "--child", kind, str(simplicity), str(n)]
    out = subprocess.run(env_cmd, capture_output=True, text=True, check=True,
                         env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin",
                              **{k: v for k, v in __import__("os").environ.items()
                                 if k.startswith(("PYTHON", "VIRTUAL_ENV", "HOME"))}})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1500, help="candidates per measurement (ours)")
    parser.add_argument("--exact-n", type=int, default=200, help="candidates, simplify=exact")
    parser.add_argument("--peer-n", type=int, default=200, help="candidates for the peer")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.child:
        kind, simplicity, n = opts.child
        print(json.dumps(measure(kind, float(simplicity), int(n))))
        return
    plan = [("fast", 0.5, opts.n), ("peer", 0.5, opts.peer_n), ("fast", 0.0, opts.n),
            ("fast", 1.0, opts.n), ("exact", 0.5, opts.exact_n)]
    results = []
    print(f"{'generator':<22}{'simplicity':>10}{'cands':>7}{'acc/cpu-s':>11}{'acc/wall-s':>11}"
          f"{'ms/acc':>8}{'rejected':>10}")
    for kind, simplicity, n in plan:
        r = run_child(kind, simplicity, n)
        results.append(r)
        name = {"fast": "tsm (simplify=fast)", "exact": "tsm (simplify=exact)",
                "peer": "Diff-TSM procedure"}[kind]
        print(f"{name:<22}{simplicity:>10}{n:>7}{r['per_cpu_s']:>11.1f}{r['per_wall_s']:>11.1f}"
              f"{r['ms_per_accepted_cpu']:>8.2f}{100 * r['rejection']:>9.1f}%", flush=True)
    ours = next(r for r in results if r["kind"] == "fast" and r["simplicity"] == 0.5)
    peer = next(r for r in results if r["kind"] == "peer")
    print(f"\nspeed-up at simplicity 0.5 (accepted per CPU-second): "
          f"{ours['per_cpu_s'] / peer['per_cpu_s']:.1f}x (target >= 10x, >= 150/s per core)")


if __name__ == "__main__":
    main()
