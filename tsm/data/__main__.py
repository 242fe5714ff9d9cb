"""``python -m tsm.data [overrides]``: build (or reuse) a task's dataset and print a summary.

Composes ``conf/data.yaml`` (knobs in ``conf/data/default.yaml``), e.g.
``python -m tsm.data data.simplicity=0.5 data.n_train=512 data.n_test=512 data.workers=2``;
``python -m tsm.data task=integration`` builds the integration data (``conf/data/integration.yaml``).
"""

from __future__ import annotations

import time
from pathlib import Path

import hydra
import pyarrow.parquet as pq
from hydra.utils import instantiate
from omegaconf import DictConfig

_CONF = str(Path(__file__).resolve().parents[2] / "conf")


def summarize(files, seconds: float) -> str:
    """A plain-text table: counts, function_type shares, mean LaTeX lengths, paths."""
    meta = files.read_meta()
    counts = meta["counts"]
    how = "reused" if files.reused else f"built in {seconds:.1f}s"
    lines = [f"dataset {files.directory} ({how})",
             (f"  train {counts['train']}  test {counts['test']}  candidates {counts['candidates']}  "
              f"duplicates {counts['duplicates']}  rejected {counts['rejected']}  "
              f"timeouts {counts['timeouts']}"
              + (f"  excluded {counts['excluded']}" if counts.get("excluded") else ""))]
    if meta["rejections"]:
        lines.append("  rejections: " + ", ".join(f"{k} {v}" for k, v in meta["rejections"].items()))
    lines.append(f"  {'function_type':<20}{'train':>8}{'test':>8}")
    for kind in meta["function_types"]["train"]:
        shares = []
        for split in ("train", "test"):
            n = counts[split]
            shares.append(f"{100 * meta['function_types'][split][kind] / n:7.1f}%" if n else "      -")
        lines.append(f"  {kind:<20}{shares[0]}{shares[1]}")
    for split in ("train", "test"):
        length = meta["mean_length"][split]
        lines.append(f"  mean LaTeX length ({split}): f {length['function']:.1f}  "
                     f"answer {length['answer']:.1f}")
    for split, path in (("train", files.train), ("test", files.test)):
        lines.append(f"  {split}: {path} ({pq.ParquetFile(path).metadata.num_rows} rows)")
    lines.append(f"  meta:  {files.meta}")
    return "\n".join(lines)


@hydra.main(config_path=_CONF, config_name="data", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from tsm.data.build import build_dataset

    spec = instantiate(cfg.data)
    began = time.perf_counter()
    files = build_dataset(spec, progress=True)
    print(summarize(files, time.perf_counter() - began))


if __name__ == "__main__":
    main()
