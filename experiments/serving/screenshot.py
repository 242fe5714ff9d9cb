"""Screenshot of the try-it page after it has answered one function, taken by headless Chromium.

    OMP_NUM_THREADS=1 python experiments/serving/screenshot.py                      # sin(x^2), tsm-diff-5m
    OMP_NUM_THREADS=1 python experiments/serving/screenshot.py --function 'x^x' --checkpoint <run>/sft/hf

Starts ``python -m tsm.serve`` on a free port, loads ``/?f=<function>`` (the page submits by
itself), dumps the DOM to read the verdict, writes the PNG (default: try_it.png beside this
script) and stops the server. Chromium: ``apt-get install -y chromium`` (Debian) or
``chromium-browser``; ``--virtual-time-budget`` lets the page's fetch finish before the capture.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[2]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_binary() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


@contextmanager
def running_server(checkpoint: str = "tsm-diff-5m", timeout_s: float = 120.0,
                   log_path: Path | None = None) -> Iterator[str]:
    """``python -m tsm.serve`` on a free port; yields its URL once it says it is ready."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    log = open(log_path or os.devnull, "w")  # noqa: SIM115 - closed below, after the process
    proc = subprocess.Popen([sys.executable, "-m", "tsm.serve", f"checkpoint={checkpoint}", "port=0"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        deadline = time.monotonic() + timeout_s
        line = ""
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:  # the server exited before it was ready
                raise RuntimeError(f"tsm.serve exited with status {proc.wait()}"
                                   + (f"; see {log_path}" if log_path else ""))
            if match := re.search(r"ready at (http://\S+)", line):
                yield match.group(1)
                return
        raise RuntimeError(f"tsm.serve not ready after {timeout_s:.0f} s")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def chromium(url: str, *args: str, timeout_s: float = 60.0) -> str:
    """Run headless Chromium on ``url`` with extra flags; its stdout (the DOM with --dump-dom)."""
    binary = chromium_binary()
    if binary is None:
        raise FileNotFoundError("no Chromium: apt-get install -y chromium (or chromium-browser)")
    with tempfile.TemporaryDirectory(prefix="tsm-chromium-") as profile:
        out = subprocess.run([binary, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
                              f"--user-data-dir={profile}", "--virtual-time-budget=10000", *args, url],
                             capture_output=True, text=True, timeout=timeout_s, check=True)
    return out.stdout


def page_url(base: str, function: str) -> str:
    return f"{base}?f={quote(function)}"


def verdict_in(dom: str) -> str | None:
    """The verdict the page shows (``correct``, ``wrong``, ...), None when it shows none."""
    match = re.search(r'id="verdict"[^>]*>([^<]*)<', dom)
    return (match.group(1).strip() or None) if match else None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default="tsm-diff-5m")
    p.add_argument("--function", default="sin(x^2)")
    p.add_argument("--out", default=str(Path(__file__).with_name("try_it.png")))
    p.add_argument("--window-size", default="900,600")
    args = p.parse_args()
    with running_server(args.checkpoint) as base:
        url = page_url(base, args.function)
        verdict = verdict_in(chromium(url, "--dump-dom"))
        chromium(url, f"--screenshot={Path(args.out).resolve()}", f"--window-size={args.window_size}")
    print(f"{url}: verdict {verdict}; screenshot {args.out}")
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())
