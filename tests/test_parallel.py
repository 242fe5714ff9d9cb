"""TimeoutPool: order, timeouts that cost one item, errors, dead workers, inline mode."""

import os
import time

import pytest

from tsm.parallel import TaskResult, TimeoutPool, resolve


def square(x):
    return x * x


def sleepy(x):
    if x < 0:
        time.sleep(60)  # a hang
    return x


def boom(x):
    raise ValueError(f"bad {x}")


def suicide(x):
    if x == 3:
        os._exit(1)
    return x


def pid(_):
    return os.getpid()


_STATE = {}


def init_state():
    _STATE["ready"] = "yes"


def read_state(_):
    return _STATE.get("ready")


def test_map_keeps_order_and_values():
    with TimeoutPool(f"{__name__}:square", workers=2, timeout_s=10) as pool:
        res = pool.map(list(range(50)))
        assert [r.value for r in res] == [i * i for i in range(50)]
        assert all(r.ok for r in res)
        # the pool is persistent: a second map reuses live workers
        res2 = pool.map(list(range(5)), chunk_size=3)
        assert [r.value for r in res2] == [0, 1, 4, 9, 16]


def test_hang_costs_one_item_and_worker_is_replaced():
    with TimeoutPool(f"{__name__}:sleepy", workers=2, timeout_s=1.0) as pool:
        t0 = time.monotonic()
        res = pool.map([1, -1, 2, 3, -2, 4])
        elapsed = time.monotonic() - t0
        assert [r.timed_out for r in res] == [False, True, False, False, True, False]
        assert [r.value for r in res if r.ok] == [1, 2, 3, 4]
        assert pool.timeouts == 2 and pool.restarts == 2
        assert elapsed < 20  # far below the 60 s hang
        assert [r.value for r in pool.map([5, 6])] == [5, 6]  # replacements work


@pytest.mark.parametrize("chunk_size", [1, 8])
def test_one_hang_in_64_costs_one_item_at_any_chunk_size(chunk_size):
    items = list(range(64))
    items[10] = -1  # hangs for 60 s
    with TimeoutPool(f"{__name__}:sleepy", workers=2, timeout_s=1.0) as pool:
        t0 = time.monotonic()
        res = pool.map(items, chunk_size=chunk_size)
        elapsed = time.monotonic() - t0
    assert [r.timed_out for r in res].count(True) == 1 and res[10].timed_out
    assert [r.value for r in res if r.ok] == [i for i in items if i >= 0]  # 63 kept, in order
    assert pool.timeouts == 1 and elapsed < 15


def test_errors_are_reported_not_raised():
    with TimeoutPool(f"{__name__}:boom", workers=1, timeout_s=5) as pool:
        res = pool.map([1, 2])
    assert all(not r.ok and not r.timed_out for r in res)
    assert res[0].error == "ValueError: bad 1"


def test_dead_worker_fails_its_item_only():
    with TimeoutPool(f"{__name__}:suicide", workers=1, timeout_s=5) as pool:
        res = pool.map([1, 2, 3, 4])
    assert [r.ok for r in res] == [True, True, False, True]
    assert "WorkerDied" in res[2].error
    with TimeoutPool(f"{__name__}:suicide", workers=1, timeout_s=5) as pool:  # the rest of its chunk is retried
        res = pool.map([1, 2, 3, 4, 5, 6], chunk_size=6)
    assert [r.value for r in res] == [1, 2, None, 4, 5, 6] and "WorkerDied" in res[2].error


def test_workers_are_separate_processes_and_init_runs():
    with TimeoutPool(f"{__name__}:pid", workers=2, timeout_s=5) as pool:
        pids = {r.value for r in pool.map(list(range(20)))}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    with TimeoutPool(f"{__name__}:read_state", workers=1, timeout_s=5, init=f"{__name__}:init_state") as pool:
        assert pool.map([0])[0].value == "yes"


def test_inline_mode():
    pool = TimeoutPool(f"{__name__}:square", workers=0, timeout_s=1)
    assert pool.map([2, 3]) == [TaskResult(4, ok=True), TaskResult(9, ok=True)]
    assert pool.map([]) == []


def test_bad_arguments():
    with pytest.raises(ValueError):
        resolve("no_colon")
    with pytest.raises(ModuleNotFoundError):
        TimeoutPool("no_such_module_xyz:f", workers=1, timeout_s=1)
    with pytest.raises(ValueError):
        TimeoutPool(f"{__name__}:square", workers=-1, timeout_s=1)
    with pytest.raises(ValueError):
        TimeoutPool(f"{__name__}:square", workers=1, timeout_s=0)


class _ScoresInWorker:
    """A dataset whose items are scored by a RewardScorer pool from inside a DataLoader worker."""

    def __len__(self):
        return 2

    def __getitem__(self, i):
        from tsm.reward import RewardScorer

        with RewardScorer(workers=1, timeout_s=10) as scorer:
            out = scorer(["\\boxed{2x}", "\\boxed{3x}"], ["2*x", "2*x"])
        return [out[0].reason, out[1].reason]


def test_pool_works_inside_a_daemonic_dataloader_worker():
    # multiprocessing forbids daemonic processes to have children; subprocess workers are fine
    from torch.utils.data import DataLoader

    loader = DataLoader(_ScoresInWorker(), batch_size=None, num_workers=1)
    assert list(loader) == [["correct", "wrong"], ["correct", "wrong"]]
