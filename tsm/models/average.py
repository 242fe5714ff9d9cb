"""Checkpoint averaging: one HF folder whose weights are the mean of several exports of one run.

``python -m tsm.models.average --out <folder> <hf folder> <hf folder> [...]``

Averaging the weights of checkpoints taken late in one training run (for instance the step-2700
and final exports of a cosine schedule, `sft/checkpoints/hf-step*` and `sft/hf`) gives one model of
the same size that often scores a little above either (Polyak averaging; "model soups" of one run).
It only makes sense for checkpoints of the same run (same architecture, same tokenizer, nearby
in training); the checks below refuse anything else with a clear error. Floating tensors are
averaged in float32 and stored in the first checkpoint's dtype; integer buffers must agree.
The output is an ordinary export (`save_hf`: written aside and renamed into place) plus
``averaged_from.json`` naming the sources, so evaluate.py and vLLM load it like any other.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from tsm.models.loading import load_checkpoint, save_hf

log = logging.getLogger("tsm")

# config.json keys that may differ between exports of one run without changing the network
_CONFIG_KEYS_IGNORED = {"_name_or_path", "transformers_version", "dtype", "torch_dtype", "use_cache"}


def _arch(model) -> dict:
    return {k: v for k, v in model.config.to_dict().items() if k not in _CONFIG_KEYS_IGNORED}


def average_state_dicts(state_dicts: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The elementwise mean of ``state_dicts`` (same keys, same shapes), float32 accumulation."""
    if len(state_dicts) < 2:
        raise ValueError(f"averaging needs at least two checkpoints, got {len(state_dicts)}")
    first = state_dicts[0]
    for i, sd in enumerate(state_dicts[1:], start=1):
        if sd.keys() != first.keys():
            missing = sorted(set(first) ^ set(sd))[:5]
            raise ValueError(f"checkpoint {i} has different tensors than checkpoint 0 (e.g. {missing})")
        for name, t in sd.items():
            if t.shape != first[name].shape:
                raise ValueError(f"checkpoint {i}: {name} has shape {tuple(t.shape)}, "
                                 f"checkpoint 0 has {tuple(first[name].shape)}")
    out: dict[str, torch.Tensor] = {}
    for name, t0 in first.items():
        if t0.is_floating_point():
            acc = torch.zeros(t0.shape, dtype=torch.float32)
            for sd in state_dicts:
                acc += sd[name].detach().float().cpu()
            out[name] = (acc / len(state_dicts)).to(t0.dtype)
        else:
            for i, sd in enumerate(state_dicts[1:], start=1):
                if not torch.equal(sd[name].cpu(), t0.cpu()):
                    raise ValueError(f"checkpoint {i}: non-float tensor {name} differs; cannot average")
            out[name] = t0.detach().clone().cpu()
    return out


def average_checkpoints(checkpoints: Sequence[str], out: str | Path) -> Path:
    """Load every HF folder in ``checkpoints``, average their weights, export to ``out``."""
    if len(checkpoints) < 2:
        raise ValueError(f"averaging needs at least two checkpoints, got {len(checkpoints)}")
    out = Path(out)
    if any(Path(c).resolve() == out.resolve() for c in checkpoints):
        raise ValueError(f"--out {out} is one of the checkpoints; write the average elsewhere")
    model, tokenizer = load_checkpoint(str(checkpoints[0]))
    arch, vocab = _arch(model), tokenizer.get_vocab()
    state_dicts = [model.state_dict()]
    for c in checkpoints[1:]:
        other, other_tok = load_checkpoint(str(c))
        other_arch = _arch(other)
        if other_arch != arch:
            diff = sorted(k for k in arch.keys() | other_arch.keys() if arch.get(k) != other_arch.get(k))
            raise ValueError(f"{c} has a different architecture than {checkpoints[0]} ({diff})")
        if other_tok.get_vocab() != vocab:
            raise ValueError(f"{c} has a different tokenizer than {checkpoints[0]}")
        state_dicts.append(other.state_dict())
    averaged = average_state_dicts(state_dicts)
    # strict: every parameter and buffer is replaced; tied weights (embed/lm_head) share storage
    # and receive the same averaged tensor twice
    model.load_state_dict(averaged, strict=True)
    folder = save_hf(model, tokenizer, out)
    (folder / "averaged_from.json").write_text(
        json.dumps({"checkpoints": [str(c) for c in checkpoints]}, indent=2) + "\n"
    )
    log.info("averaged %d checkpoints into %s", len(checkpoints), folder)
    return folder


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tsm.models.average",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", help="HF folders of one run (two or more)")
    parser.add_argument("--out", required=True, help="the HF folder to write (replaced whole if it exists)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        folder = average_checkpoints(args.checkpoints, args.out)
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    print(folder)


if __name__ == "__main__":
    main()
