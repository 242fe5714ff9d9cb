"""The integration sampler: draw a pair (f, F) with F' = f, pose "find an antiderivative of f".

Two ways to make a pair, from the same trees and templates as differentiation
(:func:`tsm.math.sampling.sample_function`), mixed by ``forward_share``:

* **backward** (Lample & Charton's BWD): draw F, pose f = F' (the fast derivative of
  :mod:`tsm.tasks.differentiation.sampler`, sympy's automatically evaluated form: the gold form of
  the differentiation task). The generator's simplification passes were measured on f (300 draws):
  they changed 20% of the integrands, made none shorter on average (47 vs 44 LaTeX characters) and
  cost 13 ms of a 17 ms draw, so f is left as differentiated. Every answer exists and is short; the
  problem is usually longer than the answer.
* **forward** (FWD): draw f, let ``sympy.integrate`` find F within ``forward_timeout_s`` seconds;
  refused when it times out, leaves an unevaluated integral or uses a special function (erf, Si,
  ...). Pairs sympy solves quickly are, by construction, the ones sympy is good at, so a test set
  for comparing a model with sympy should be backward (the default ``forward_share`` is 0).

Draws are refused, with a stable reason, as differentiation's are (``not_finite``,
``invalid_node``, ``complex``, ``too_large``, ``error``), plus ``constant`` (f = 0),
``too_long_function`` / ``too_long_answer`` (LaTeX over ``max_length``), ``timeout`` and
``not_elementary`` (forward only). The dedup key digests the integrand f (the problem): two draws
F and F + 3 pose the same problem.

The forward time limit uses ``SIGALRM`` (``signal.setitimer``), which only the main thread of a
process can set; elsewhere sympy runs without a limit and the build's per-candidate timeout
(``tsm.parallel.TimeoutPool``) is the bound. A pair whose integration timed out on a slower
machine may be accepted on a faster one: only a backward build is reproducible bit for bit.

Ground truth: ``str(f)``, the integrand, because the check accepts any antiderivative
(``verify`` differentiates the answer); the reference answer F is stored as the row's ``answer``.
"""

from __future__ import annotations

import random
import signal
import threading
from dataclasses import dataclass

import sympy

from tsm.math import render, sampling
from tsm.tasks.base import Rejected, chat_prompt
from tsm.tasks.differentiation.sampler import MAX_NODES, canonical_key, derivative, scan

USER_PROMPTS: tuple[str, ...] = (
    "Find an antiderivative of the following function w.r.t. x: {function}",
    "Integrate {function} with respect to x.",
    "Find the indefinite integral of {function}",
    "Compute the integral of f(x) = {function} with respect to x.",
    "What is the antiderivative of {function}?",
    "Find F(x) such that F'(x) = {function}",
    "Evaluate the indefinite integral of {function} dx.",
    "Given f(x) = {function}, find a function whose derivative is f(x).",
    "Integrate the following function: {function}",
    "Find the primitive of {function} with respect to x.",
)
FIXED_PROMPT = "Find an antiderivative of the following function with respect to x: {function}"
_X = sampling.X


class _Timeout(BaseException):  # not Exception: sympy catches those inside its own try blocks
    pass


@dataclass(frozen=True)
class IntegrationProblem:
    """One accepted pair: the integrand f and an antiderivative F, as sympy and LaTeX."""

    function: sympy.Expr  # f, the integrand (what is posed)
    antiderivative: sympy.Expr  # F, a reference answer (any F + C is right)
    function_latex: str
    answer_latex: str
    function_type: str  # the family of the drawn function (F for backward, f for forward)
    key: str  # digest of f
    direction: str  # "backward" or "forward"

    @property
    def function_sympy(self) -> str:
        return str(self.function)

    @property
    def answer_sympy(self) -> str:
        return str(self.antiderivative)


def _check_tree(expr: sympy.Expr, what: str) -> None:
    finite, valid, imaginary, nodes = scan(expr)
    if not finite:
        raise Rejected("not_finite", f"{what}: {expr}")
    if not valid:
        raise Rejected("invalid_node", f"{what}: {expr}")
    if imaginary:
        raise Rejected("complex", f"{what}: {expr}")
    if nodes > MAX_NODES:
        raise Rejected("too_large", f"{what}: {expr}")


def integrate_within(f: sympy.Expr, seconds: float) -> sympy.Expr:
    """``sympy.integrate(f, x)``, raising :class:`Rejected` ``timeout`` after ``seconds`` (main
    thread only; elsewhere without a limit)."""
    if threading.current_thread() is not threading.main_thread() or seconds <= 0:
        return sympy.integrate(f, _X)

    def alarm(signum, frame):
        raise _Timeout

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return sympy.integrate(f, _X)
    except _Timeout:
        raise Rejected("timeout", str(f)) from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class IntegrationTask:
    """Sample (f, F) pairs, pose "find an antiderivative of f", give ``str(f)`` as ground truth."""

    name = "integration"
    data_source = "tsm/integration"

    def __init__(self, simplicity: float = 0.5, max_coefficient: int = 40, max_power: int = 5,
                 max_depth: int = 4, max_length: int = 100, variations: bool = True,
                 simplify: str = "fast", forward_share: float = 0.0, forward_timeout_s: float = 1.0,
                 surface: str = "diff_tsm", drop_constants: bool = False):
        if simplify not in sampling.SIMPLIFY_MODES:
            raise ValueError(f"simplify must be one of {sampling.SIMPLIFY_MODES}, got {simplify!r}")
        if surface not in render.SURFACE_STYLES:
            raise ValueError(f"surface must be one of {render.SURFACE_STYLES}, got {surface!r}")
        self.surface, self.drop_constants = surface, bool(drop_constants)
        if isinstance(forward_share, bool) or not isinstance(forward_share, (int, float)) \
                or not 0.0 <= forward_share <= 1.0:
            raise ValueError(f"data.task_options.forward_share={forward_share!r}: must be in [0, 1]")
        if not isinstance(forward_timeout_s, (int, float)) or not forward_timeout_s > 0:
            raise ValueError(f"data.task_options.forward_timeout_s={forward_timeout_s!r}: must be > 0")
        self.simplicity, self.max_coefficient, self.max_power = simplicity, max_coefficient, max_power
        self.max_depth, self.max_length, self.variations = max_depth, max_length, variations
        self.simplify = simplify
        self.forward_share, self.forward_timeout_s = float(forward_share), float(forward_timeout_s)

    def sample(self, rng: random.Random) -> IntegrationProblem:
        forward = rng.random() < self.forward_share
        try:
            drawn = sampling.sample_function(
                rng, simplicity=self.simplicity, max_coefficient=self.max_coefficient,
                max_power=self.max_power, max_depth=self.max_depth, mode=self.simplify)
            return self._forward(drawn) if forward else self._backward(drawn)
        except Rejected:
            raise
        except Exception as exc:  # sympy can raise on odd trees
            raise Rejected("error", f"{type(exc).__name__}: {exc}") from exc

    def _latex(self, expr: sympy.Expr, reason: str) -> str:
        text = render.to_latex(expr)
        if len(text) > self.max_length:
            raise Rejected(reason, text)
        return text

    def _backward(self, drawn: sampling.SampledFunction) -> IntegrationProblem:
        big_f = drawn.expr
        _check_tree(big_f, "F")
        answer_latex = self._latex(big_f, "too_long_answer")
        f = derivative(big_f)
        if f == 0 or (self.drop_constants and not f.has(_X)):
            raise Rejected("constant", str(big_f))
        _check_tree(f, "f")
        return IntegrationProblem(f, big_f, self._latex(f, "too_long_function"), answer_latex,
                                  drawn.function_type, canonical_key(f), "backward")

    def _forward(self, drawn: sampling.SampledFunction) -> IntegrationProblem:
        f = drawn.expr
        if f == 0 or (self.drop_constants and not f.has(_X)):
            raise Rejected("constant", str(f))
        _check_tree(f, "f")
        function_latex = self._latex(f, "too_long_function")
        big_f = integrate_within(f, self.forward_timeout_s)
        if big_f.has(sympy.Integral):
            raise Rejected("not_elementary", str(f))
        if not scan(big_f)[1]:  # a special function (erf, Si, ...): not an elementary answer
            raise Rejected("not_elementary", str(big_f))
        _check_tree(big_f, "F")
        return IntegrationProblem(f, big_f, function_latex, self._latex(big_f, "too_long_answer"),
                                  drawn.function_type, canonical_key(f), "forward")

    def pose(self, problem: IntegrationProblem, rng: random.Random) -> tuple[list[dict[str, str]], str]:
        """The chat messages and the surface form of f they show."""
        return chat_prompt(problem.function, problem.function_latex, rng, variations=self.variations,
                           surface=self.surface, prompts=USER_PROMPTS, fixed=FIXED_PROMPT)

    def messages(self, problem: IntegrationProblem, rng: random.Random) -> list[dict[str, str]]:
        return self.pose(problem, rng)[0]

    def ground_truth(self, problem: IntegrationProblem) -> str:
        return problem.function_sympy
