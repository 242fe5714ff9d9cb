"""Hydra callback that keeps a multirun folder's report (tsm.report) up to date.

Registered in conf/hydra/default.yaml. After each job of a multirun it rewrites ``report.csv`` and
``report.md`` from the jobs finished so far, so a sweep that stops half way (a failed job makes
Hydra's sweepers raise before ``on_multirun_end``) still leaves its table; at the end of the sweep
it writes the full report with the plot and prints the table. Single runs are left alone.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

log = logging.getLogger("tsm")


class MultirunReport(Callback):
    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        self._write(config, make_plot=False, wandb=False, echo=False)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._write(config, make_plot=True, wandb=None, echo=True)

    @staticmethod
    def _write(config: DictConfig, **kwargs: Any) -> None:
        from tsm.report import write_report

        try:
            write_report(Path(config.hydra.sweep.dir), **kwargs)
        except Exception:  # a report must never turn a finished sweep into a failed one
            log.exception("Could not write the multirun report for %s", config.hydra.sweep.dir)
