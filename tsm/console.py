"""What a training run prints: library noise filtered once, each log line once, a whole-run
progress line, every validation result.

- ``quiet_libraries()``: drops Lightning's start-up chatter (GPU/TPU availability, tips, seed and
  ``weights_only`` notes), a known deprecation warning from Lightning's ``_pytree``, and
  transformers' "Writing model shards" bar; removes the stderr handlers Lightning attaches to its
  own loggers (so a line reaches the console once, through Hydra's handler, and the run's log file).
- ``RunProgress``: a Lightning callback that replaces the per-epoch bar. On a terminal it is one
  tqdm bar over the whole run (global step / max_steps, elapsed, ETA) with the latest loss (or
  GRPO reward), learning rate and validation metrics; elsewhere (a log file, CI) it logs the same
  as a line every ``every_n_steps``. Every validation result is logged as its own line.
"""
from __future__ import annotations

import logging
import sys
import time
import warnings
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

log = logging.getLogger("tsm")

_NOISE = ("GPU available", "TPU available", "HPU available", "Tip:", "`weights_only` was not set",
          "Seed set to", "LOCAL_RANK", "You are using a CUDA device")


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not any(n in msg for n in _NOISE)


def quiet_libraries() -> None:
    """Idempotent; call once before a Trainer is built."""
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        lg = logging.getLogger(name)
        for h in list(lg.handlers):  # Lightning's own stderr handler: the root (Hydra) handler prints it
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                lg.removeHandler(h)
        if not any(isinstance(f, _DropNoise) for f in lg.filters):
            lg.addFilter(_DropNoise())
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.seed",
                 "lightning.fabric.utilities.rank_zero",
                 "lightning.pytorch.trainer.connectors.checkpoint_connector"):
        lg = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in lg.filters):
            lg.addFilter(_DropNoise())
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass


def _fmt_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _value(metrics: dict[str, Any], key: str) -> float | None:
    v = metrics.get(key)
    if v is None:
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


class RunProgress(Callback):
    """Whole-run progress: global step of ``max_steps``, ETA, loss/reward, lr, latest validation."""

    def __init__(self, every_n_steps: int | None = None, tty: bool | None = None):
        self.every_n_steps = every_n_steps
        self.tty = sys.stderr.isatty() if tty is None else tty
        self._bar = None
        self._t0 = 0.0
        self._first_step = 0
        self._val: dict[str, float] = {}
        self._val_step: int | None = None

    # -- the line ---------------------------------------------------------------------------
    def status(self, trainer: L.Trainer) -> str:
        m = trainer.callback_metrics
        parts = []
        reward = _value(m, "train/reward/mean")
        loss = _value(m, "train/loss")
        if reward is not None:
            parts.append(f"reward {reward:.3f}")
        elif loss is not None:
            parts.append(f"loss {loss:.4f}")
        lr = _value(m, "train/lr")
        if lr is not None:
            parts.append(f"lr {lr:.2e}")
        if self._val:
            shown = " ".join(f"{k} {v:.2%}" if "accuracy" in k else f"{k} {v:.4f}" for k, v in self._val.items())
            parts.append(f"{shown} (step {self._val_step})")
        return " | ".join(parts)

    def line(self, trainer: L.Trainer) -> str:
        step, total = trainer.global_step, trainer.max_steps
        done = step - self._first_step
        elapsed = time.perf_counter() - self._t0
        rate = elapsed / done if done > 0 else None
        eta = f"ETA {_fmt_duration(rate * (total - step))}" if rate and total and total > 0 else "ETA ?"
        speed = f"{rate:.2f} s/step" if rate else "- s/step"
        head = f"step {step}/{total}" if total and total > 0 else f"step {step}"
        return " | ".join(p for p in (head, speed, eta, self.status(trainer)) if p)

    # -- hooks ------------------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._t0 = time.perf_counter()
        self._first_step = trainer.global_step
        if self.every_n_steps is None:
            self.every_n_steps = max(1, (trainer.max_steps or 100) // 20)
        if self.tty and trainer.is_global_zero:
            from tqdm import tqdm

            self._bar = tqdm(total=trainer.max_steps if trainer.max_steps > 0 else None,
                             initial=trainer.global_step, desc=f"{module.__class__.__name__}", unit="step",
                             dynamic_ncols=True, leave=True)

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args: Any) -> None:
        if not trainer.is_global_zero:
            return
        # GRPO validates inside its step (no validation loop) and keeps the result in last_metrics
        acc = (getattr(module, "last_metrics", None) or {}).get("val/accuracy@1")
        if acc is not None and self._val.get("val/accuracy@1") != float(acc):
            self._report_validation(trainer, {"val/accuracy@1": float(acc)}, None, None)
        if self._bar is not None:
            self._bar.n = trainer.global_step
            self._bar.set_postfix_str(self.status(trainer), refresh=True)
        elif trainer.global_step % self.every_n_steps == 0 or trainer.global_step == trainer.max_steps:
            log.info("%s", self.line(trainer))

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        m = trainer.callback_metrics
        val = {k: float(v) for k, v in m.items() if k.startswith("val/") and _value(m, k) is not None
               and not k.endswith(("ci95_low", "ci95_high"))}
        if not val:
            return
        self._report_validation(trainer, val, _value(m, "val/accuracy@1/ci95_low"),
                                _value(m, "val/accuracy@1/ci95_high"))

    def _report_validation(self, trainer: L.Trainer, val: dict[str, float], lo: float | None,
                           hi: float | None) -> None:
        self._val, self._val_step = val, trainer.global_step
        text = ", ".join(f"{k} {v:.2%}" if "accuracy" in k else f"{k} {v:.4f}" for k, v in val.items())
        if lo is not None and hi is not None:
            text += f" (95% interval [{lo:.1%}, {hi:.1%}])"
        msg = f"validation at step {trainer.global_step}: {text}"
        if self._bar is not None:
            self._bar.write(msg)
        log.info("%s", msg)

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if trainer.is_global_zero:
            log.info("finished: %s", self.line(trainer))
