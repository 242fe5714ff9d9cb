"""Tasks: sample problems, pose them as chat messages, name the ground truth (see ``base.Task``)."""

from tsm.tasks.base import SYSTEM_PROMPT, Rejected, Task
from tsm.tasks.differentiation import DifferentiationProblem, DifferentiationTask

__all__ = ["SYSTEM_PROMPT", "DifferentiationProblem", "DifferentiationTask", "Rejected", "Task"]
