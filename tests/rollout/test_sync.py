"""WeightSync pushes the policy into the engine once per optimizer step, never per micro-batch."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from tsm.rollout.sync import WeightSync


class FakeEngine:
    """Records every push: the training step it came at and the tensors it carried."""

    def __init__(self, shares_policy_weights: bool = False, dtype: torch.dtype = torch.bfloat16):
        self.shares_policy_weights = shares_policy_weights
        self.dtype = dtype
        self.pushes: list[dict[str, torch.Tensor]] = []

    def load_weights(self, named_tensors) -> None:
        self.pushes.append({name: t.clone() for name, t in named_tensors})


class Policy(torch.nn.Module):
    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.body = torch.nn.Linear(4, 8)
        self.head = torch.nn.Linear(8, 1)

    def forward(self, x):
        return self.head(torch.tanh(self.body(x)))


class ManualModule(L.LightningModule):
    """GRPO-shaped: manual optimization, `optimizer_steps` steps per batch, each over micro-batches."""

    def __init__(self, seed: int = 0, micro_batches: int = 4, optimizer_steps: int = 1):
        super().__init__()
        self.automatic_optimization = False
        self.model = Policy(seed)
        self.micro_batches, self.optimizer_steps = micro_batches, optimizer_steps

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        (x,) = batch
        for _ in range(self.optimizer_steps):
            for chunk in x.chunk(self.micro_batches):
                self.manual_backward(self.model(chunk).pow(2).mean() / self.micro_batches)
            opt.step()
            opt.zero_grad()

    def configure_optimizers(self):
        return torch.optim.SGD(self.model.parameters(), lr=0.1)


class AutoModule(ManualModule):
    def __init__(self):
        super().__init__()
        self.automatic_optimization = True

    def training_step(self, batch, batch_idx):
        return self.model(batch[0]).pow(2).mean()


def fit(module, engine, max_steps: int, tmp_path, ckpt_path=None, **trainer_kwargs) -> tuple[L.Trainer, WeightSync]:
    sync = WeightSync(engine)
    trainer = L.Trainer(
        max_steps=max_steps, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path),
        callbacks=[sync], **trainer_kwargs,
    )
    data = DataLoader(TensorDataset(torch.randn(64, 4, generator=torch.Generator().manual_seed(0))),
                      batch_size=8)
    trainer.fit(module, data, ckpt_path=ckpt_path)
    return trainer, sync


def as_engine_dtype(module, dtype=torch.bfloat16) -> dict[str, torch.Tensor]:
    return {n: p.detach().to(dtype) for n, p in module.model.named_parameters()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("optimizer_steps", [1, 2])
def test_one_push_at_start_and_after_each_batch_of_steps(tmp_path, optimizer_steps):
    engine, module = FakeEngine(), ManualModule(micro_batches=4, optimizer_steps=optimizer_steps)
    initial = as_engine_dtype(module)
    trainer, sync = fit(module, engine, max_steps=3 * optimizer_steps, tmp_path=tmp_path)
    assert trainer.global_step == 3 * optimizer_steps
    # 1 at train start + 1 per batch: never per micro-batch, nor per inner optimizer step
    assert sync.n_syncs == len(engine.pushes) == 4
    assert same(engine.pushes[0], initial)
    assert all(t.dtype == torch.bfloat16 for t in engine.pushes[-1].values())  # engine dtype
    assert same(engine.pushes[-1], as_engine_dtype(module))  # the weights after the last step
    assert all(not same(a, b) for a, b in zip(engine.pushes, engine.pushes[1:]))  # each push is new
    assert trainer.callback_metrics["rollout/sync_seconds"] >= 0


def test_gradient_accumulation_pushes_once_per_optimizer_step(tmp_path):
    engine = FakeEngine()
    trainer, sync = fit(AutoModule(), engine, max_steps=3, tmp_path=tmp_path, accumulate_grad_batches=2)
    assert trainer.global_step == 3 and sync.n_syncs == 1 + 3  # 6 batches, 3 optimizer steps


def test_skips_engines_that_share_the_policy(tmp_path):
    engine = FakeEngine(shares_policy_weights=True)
    _, sync = fit(ManualModule(), engine, max_steps=2, tmp_path=tmp_path)
    assert engine.pushes == [] and sync.n_syncs == 0


def test_resume_pushes_the_restored_weights_first(tmp_path):
    trainer, _ = fit(ManualModule(seed=0), FakeEngine(), max_steps=2, tmp_path=tmp_path)
    ckpt = tmp_path / "step2.ckpt"
    trainer.save_checkpoint(ckpt)
    trained = torch.load(ckpt, weights_only=False)["state_dict"]
    trained = {k.removeprefix("model."): v.to(torch.bfloat16) for k, v in trained.items()}

    fresh, engine = ManualModule(seed=1), FakeEngine()  # built with other (initial) weights
    assert not same(as_engine_dtype(fresh), trained)
    fit(fresh, engine, max_steps=3, tmp_path=tmp_path, ckpt_path=str(ckpt))
    assert same(engine.pushes[0], trained) and len(engine.pushes) == 2  # start + the one new step
