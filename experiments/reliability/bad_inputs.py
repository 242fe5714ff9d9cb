"""Every bad input of issue 20 (and a few more), tried from the command line: the message a user
sees, the exit status and the seconds until it appears. Prints the markdown table recorded in
experiments/reliability/README.md.

    OMP_NUM_THREADS=1 python experiments/reliability/bad_inputs.py

Each case is a fresh ``python train.py`` / ``python evaluate.py`` process (so the seconds include
the interpreter and imports, ~5 s here). The shown message is the ``error:`` line, or else the
first line of stderr (Hydra's own errors).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def cases(tmp: Path) -> list[tuple[str, list[str]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    no_gold = tmp / "no_gold.parquet"
    pq.write_table(pa.Table.from_pylist([{"prompt": [{"role": "user", "content": "x"}], "responses": ["\\boxed{1}"]}]), no_gold)
    corrupt = tmp / "corrupt.parquet"
    corrupt.write_bytes(os.urandom(4096))
    empty_run = tmp / "empty_run"
    (empty_run / "sft" / "checkpoints").mkdir(parents=True)
    finished = tmp / "finished_run"
    finished.mkdir()
    (finished / "metrics.json").write_text(json.dumps({"after": {"accuracy@1": 0.5}}))
    tr = [sys.executable, "train.py", "experiment=tiny_sft", "model=tiny_1m", f"data.output_dir={tmp / 'data'}",
          f"hydra.run.dir={tmp / 'run'}"]
    ev = [sys.executable, "evaluate.py", f"data.output_dir={tmp / 'data'}", f"hydra.run.dir={tmp / 'eval'}"]
    return [
        ("GRPO with one sample per prompt", [*tr, "stages=[sft,grpo]", "grpo.module.group_size=1"]),
        ("resume from a missing checkpoint", [*tr, "ckpt_path=/nonexistent.ckpt"]),
        ("resume from a run folder with no checkpoint", [*tr, f"ckpt_path={empty_run}"]),
        ("evaluate a missing checkpoint", [*ev, "checkpoint=/nonexistent"]),
        ("unwritable data.output_dir", [*tr, "data.output_dir=/proc/tsm-data"]),
        ("negative learning rate", [*tr, "sft.module.optimizer.lr=-1"]),
        ("batch not a multiple of the micro-batch", [*tr, "sft.data_module.batch_size=10", "sft.data_module.micro_batch_size=4"]),
        ("simplicity outside [0, 1]", [*tr, "data.simplicity=2"]),
        ("unknown stage", [*tr, "stages=[sft,ppo]"]),
        ("init_from a model that does not exist", [*tr, "init_from=no-such-model"]),
        ("a run folder that holds a finished run", [*tr[:-1], f"hydra.run.dir={finished}"]),
        ("responses parquet without reward_model", [*ev, f"responses={no_gold}"]),
        ("corrupt responses parquet", [*ev, f"responses={corrupt}"]),
        ("misspelled key (Hydra's own check)", [*tr, "sft.max_stepz=3"]),
    ]


def main() -> None:
    env = {**os.environ, "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "0"}
    print("| bad input | command (after `python train.py experiment=tiny_sft` / `python evaluate.py`) | exit | seconds | traceback | message |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as d:
        for name, cmd in cases(Path(d)):
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
            secs = time.perf_counter() - t0
            lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "HYDRA_FULL_ERROR" not in ln]
            msg = next((ln for ln in lines if ln.startswith("error:")), lines[0] if lines else "")
            shown = [a for a in cmd[2:] if not a.startswith(("data.output_dir=" + d, f"hydra.run.dir={d}/run",
                                                               f"hydra.run.dir={d}/eval", "experiment=", "model="))]
            args = " ".join(shown).replace(d, "<tmp>")
            msg = msg.replace(d, "<tmp>").replace("|", "\\|")
            tb = "yes" if "Traceback" in proc.stderr else "no"
            print(f"| {name} | `{args}` | {proc.returncode} | {secs:.1f} | {tb} | {msg} |", flush=True)


if __name__ == "__main__":
    main()
