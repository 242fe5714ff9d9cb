"""Tasks as plugins: one package per task under ``tsm/tasks/<name>/`` (see ``base.TaskPlugin``)."""

from tsm.tasks.base import (
    SYSTEM_PROMPT,
    TASKS,
    Posed,
    Problem,
    Rejected,
    Sampler,
    Task,
    TaskPlugin,
    get_task,
    task_of_row,
)
from tsm.tasks.differentiation import DifferentiationProblem, DifferentiationTask

__all__ = ["SYSTEM_PROMPT", "TASKS", "DifferentiationProblem", "DifferentiationTask", "Posed",
           "Problem", "Rejected", "Sampler", "Task", "TaskPlugin", "get_task", "task_of_row"]
