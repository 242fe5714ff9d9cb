"""Where a job's memory peaks: run a command, sample the RSS of its process tree, name the phase.

    python experiments/quickstart/peak_memory.py [--every 0.5] -- python train.py experiment=quickstart ...

Samples every process of the tree (the job and its workers) every ``--every`` seconds with psutil,
and prints the peak RSS of the largest single process and of the whole tree, each with the last log
line the job had printed at that moment (so the phase is named: the data build, the before-test's
generation, SFT, the after-test). Nothing is changed in the job; its output is passed through.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time

import psutil


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--every", type=float, default=0.5, help="seconds between samples")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="the job (after --)")
    args = ap.parse_args(argv)
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        ap.error("give the command after --")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    last = ["(start)"]

    def pump() -> None:
        for line in proc.stdout:
            sys.stdout.write(line)
            text = line.strip()
            if text:
                last[0] = text[:160]

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    root = psutil.Process(proc.pid)
    peak_one = (0, "", 0.0)
    peak_tree = (0, "", 0.0)
    t0 = time.perf_counter()
    while proc.poll() is None:
        try:
            procs = [root, *root.children(recursive=True)]
            rss = []
            for p in procs:
                try:
                    rss.append(p.memory_info().rss)
                except psutil.Error:
                    pass
        except psutil.Error:
            break
        now = time.perf_counter() - t0
        if rss and max(rss) > peak_one[0]:
            peak_one = (max(rss), last[0], now)
        if rss and sum(rss) > peak_tree[0]:
            peak_tree = (sum(rss), last[0], now)
        time.sleep(args.every)
    reader.join(timeout=5)
    gib = 2**30
    print(f"\n[peak_memory] largest single process: {peak_one[0] / gib:.2f} GiB at {peak_one[2]:.0f} s, "
          f"after: {peak_one[1]}")
    print(f"[peak_memory] whole tree: {peak_tree[0] / gib:.2f} GiB at {peak_tree[2]:.0f} s, after: {peak_tree[1]}")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
