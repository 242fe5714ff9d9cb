"""Symbolic integration: given f(x), answer an antiderivative F inside ``\\boxed{}`` (issue 21).

``verify(response, integrand) -> Score`` is the task's answer check (see ``verify``);
``antiderivative_check(answer_expr, integrand_expr)`` is the same test on parsed sympy trees.
"""
from tsm.tasks.integration.verify import antiderivative_check, verify

__all__ = ["antiderivative_check", "verify"]
