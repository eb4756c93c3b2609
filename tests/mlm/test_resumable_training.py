"""Exact, crash-safe resuming: the sample stream, per-sample augmentation seeds, random states, checkpoint saving and
resuming, and the iteration limit, on a toy trainer (in-process, tiny tensors)."""

from __future__ import annotations

import logging
import os
import random
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from ignite.engine import Engine, Events
from monai.data import DataLoader
from monai.transforms import Compose, RandGaussianNoised

from mlm.bundle import (
    GlobalRandomStates,
    ResumableCacheDataset,
    ResumableSampler,
    SampleKey,
    checkpoint_candidates,
    num_epochs,
    sample_seed,
)
from mlm.handlers import IterationLimit, ResumeFromCheckpoint, TrainingCheckpointSaver

torch.set_num_threads(1)


# --- the sample stream ---------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 7),
    seed=st.integers(0, 2**40),
    replicas=st.integers(1, 3),
    start=st.integers(0, 25),
    length=st.integers(1, 15),
)
def test_sampler_stream_is_the_same_whatever_the_start_and_the_process_count(n, seed, replicas, start, length):
    single = list(islice(iter(ResumableSampler(n, seed, num_replicas=1, rank=0)), (start + length) * replicas + 1))
    assert [k.position for k in single] == list(range(len(single)))
    for p in range(len(single) // n):  # every pass visits every item once
        assert sorted(k.index for k in single[p * n : (p + 1) * n]) == list(range(n))
    assert all(k.seed == sample_seed(seed, k.position) for k in single)
    for rank in range(replicas):
        sampler = ResumableSampler(n, seed, num_replicas=replicas, rank=rank)
        head = list(islice(iter(sampler), start + length))
        sampler.set_position(start)
        resumed = list(islice(iter(sampler), length))
        assert resumed == head[start:]  # a restart at `start` continues the stream exactly
        assert resumed == single[start * replicas + rank :: replicas][:length]  # the ranks share one stream


def test_sampler_orders_depend_on_the_seed_only_and_validate_arguments():
    a, b = ResumableSampler(50, seed=1), ResumableSampler(50, seed=2)
    assert np.array_equal(a.order(3), ResumableSampler(50, seed=1).order(3))
    assert not np.array_equal(a.order(0), a.order(1)) and not np.array_equal(a.order(0), b.order(0))
    assert np.array_equal(ResumableSampler(5, shuffle=False).order(7), np.arange(5))
    assert a.key(57) == SampleKey(int(a.order(1)[7]), 57, sample_seed(1, 57))
    with pytest.raises(ValueError, match="empty"):
        ResumableSampler([])
    with pytest.raises(ValueError, match="seed must be >= 0"):
        ResumableSampler(3, seed=-1)
    with pytest.raises(ValueError, match="rank 2 is not in"):
        ResumableSampler(3, num_replicas=2, rank=2)
    assert a.samples_consumed(iteration=4, batch_size=3) == 12
    a.set_position(10, iteration=4)
    assert a.samples_consumed(iteration=6, batch_size=2) == 14  # 10 + 2 iterations x 2 since the restart


def _noisy_dataset(n: int = 5) -> ResumableCacheDataset:
    data = [{"x": torch.full((4,), float(i))} for i in range(n)]
    return ResumableCacheDataset(data, Compose([RandGaussianNoised(keys="x", prob=1.0, std=1.0)]), progress=False)


def test_dataset_augments_each_sample_from_its_key_alone():
    ds = _noisy_dataset()
    k1, k2 = SampleKey(1, 7, 123), SampleKey(1, 8, 456)
    first = ds[k1]["x"]
    for other in (k2, SampleKey(3, 9, 789)):  # other samples in between change nothing
        ds[other]
    assert torch.equal(ds[k1]["x"], first)
    assert not torch.equal(ds[k2]["x"], first)  # same item, another position: another augmentation
    assert torch.allclose(first.mean(), torch.tensor(1.0), atol=3.0)  # item 1 plus noise
    assert ds[1]["x"].shape == (4,) and len(ds[0:2]) == 2  # integer indices and slices work as in CacheDataset


# --- random states ---------------------------------------------------------------------------------------------------


def test_global_random_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.random(), np.random.normal(), torch.rand(1)  # numpy holds a cached gaussian now
    torch.save({"rng": GlobalRandomStates().state_dict()}, tmp_path / "c.pt")
    expected = (random.random(), np.random.normal(size=3), torch.rand(3))
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    GlobalRandomStates().load_state_dict(torch.load(tmp_path / "c.pt", weights_only=True)["rng"])
    got = (random.random(), np.random.normal(size=3), torch.rand(3))
    assert got[0] == expected[0] and np.array_equal(got[1], expected[1]) and torch.equal(got[2], expected[2])


# --- a toy trainer with the bundles' handlers -------------------------------------------------------------------------


def _toy_trainer(
    ckpt_dir: Path,
    num_iterations: int,
    epoch_length: int,
    num_workers: int = 0,
    n_saved: int | None = 1,
    seed: int = 0,
    max_epochs: int | None = None,
):
    """An ignite trainer wired like the bundles: resumable sampler and dataset, dropout, Adam, resume/limit/saver."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Dropout(0.5), torch.nn.Linear(16, 1))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    ds = _noisy_dataset()
    loader = DataLoader(ds, sampler=ResumableSampler(ds, seed=seed), batch_size=2, num_workers=num_workers)

    def step(engine, batch):
        opt.zero_grad()
        loss = (net(batch["x"]) - 1.0).pow(2).mean()
        loss.backward()
        opt.step()
        engine.state.seen.append(engine.state.iteration)
        return loss.item()

    engine = Engine(step)
    engine.state.seen = []
    objects = {"model": net, "optimizer": opt}
    ResumeFromCheckpoint(ckpt_dir, objects).attach(engine)
    IterationLimit(num_iterations).attach(engine)
    TrainingCheckpointSaver(
        ckpt_dir,
        objects,
        file_prefix="checkpoint",
        save_interval=1,
        n_saved=n_saved,
        save_final=True,
        final_filename="model.pt",
    ).attach(engine)

    def run():
        epochs = max_epochs or num_epochs(num_iterations, epoch_length)
        engine.run(loader, max_epochs=epochs, epoch_length=epoch_length)
        return net

    return engine, run


def _max_abs_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max(float((p - q).abs().max()) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_toy_training_interrupted_mid_epoch_resumes_exactly_also_with_loader_workers(tmp_path):
    _, run = _toy_trainer(tmp_path / "a", 7, 3)
    uninterrupted = run()
    engine, run = _toy_trainer(tmp_path / "b", 7, 3)
    engine.add_event_handler(Events.ITERATION_COMPLETED(once=4), lambda e: e.terminate())  # stop inside epoch 2
    stopped = run()
    assert engine.state.iteration == 4 and _max_abs_diff(stopped, uninterrupted) > 0
    engine, run = _toy_trainer(tmp_path / "b", 7, 3, num_workers=2)
    resumed = run()
    assert engine.state.seen == [5, 6, 7]
    assert _max_abs_diff(resumed, uninterrupted) == 0.0
    assert sorted(os.listdir(tmp_path / "b")) == ["checkpoint_iteration=7.pt", "model.pt"]


def test_failed_save_keeps_the_previous_checkpoint_and_the_resumed_run_is_exact(tmp_path, monkeypatch):
    _, run = _toy_trainer(tmp_path / "a", 6, 2)
    uninterrupted = run()

    real_save, calls = torch.save, []

    def failing_save(obj, f, *args, **kwargs):  # from the second save on: half a file, then an error
        calls.append(f)
        if len(calls) < 2:
            return real_save(obj, f, *args, **kwargs)
        real_save(obj, f, *args, **kwargs)
        with open(f, "r+b") as fh:
            fh.truncate(os.path.getsize(f) // 2)
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", failing_save)
    _, run = _toy_trainer(tmp_path / "b", 6, 2)
    with pytest.raises(OSError, match="No space left"):
        run()
    monkeypatch.setattr(torch, "save", real_save)
    # the checkpoint of iteration 2 was not removed for the failed one of iteration 4; no partial file is left
    assert sorted(os.listdir(tmp_path / "b")) == ["checkpoint_iteration=2.pt"]
    assert len(calls) == 3  # the periodic save at 4 and the final save after the error both failed
    engine, run = _toy_trainer(tmp_path / "b", 6, 2)
    resumed = run()
    assert engine.state.seen == [3, 4, 5, 6]
    assert _max_abs_diff(resumed, uninterrupted) == 0.0


def test_resume_skips_unreadable_checkpoints_and_logs_them(tmp_path, caplog):
    engine, run = _toy_trainer(tmp_path, 4, 2, n_saved=None)
    run()
    good, newer = tmp_path / "checkpoint_iteration=2.pt", tmp_path / "checkpoint_iteration=4.pt"
    newer.write_bytes(newer.read_bytes()[:100])  # truncated
    (tmp_path / "model.pt").unlink()
    torch.save({"model": {}}, tmp_path / "checkpoint_other.pt")  # readable, but no training state
    for i, path in enumerate([good, newer, tmp_path / "checkpoint_other.pt"]):  # modification times in this order
        os.utime(path, ns=(1, (i + 1) * 10**18))
    assert checkpoint_candidates(tmp_path) == [str(tmp_path / "checkpoint_other.pt"), str(newer), str(good)]
    engine, run = _toy_trainer(tmp_path, 5, 2, n_saved=None)
    with caplog.at_level(logging.INFO):
        run()
    assert engine.state.seen == [3, 4, 5]
    log = caplog.text
    assert "skipped checkpoint" in log and "checkpoint_iteration=4.pt" in log and "cannot be read" in log
    assert "checkpoint_other.pt: it has no ['optimizer', 'trainer'] entries" in log
    assert f"resumed from {good} at epoch 1, iteration 2" in log


def test_resume_follows_this_runs_num_iterations_and_val_interval(tmp_path, caplog):
    engine, run = _toy_trainer(tmp_path, 8, 2)
    run()
    assert engine.state.seen == list(range(1, 9))
    # the case: a run saved with val_interval 2 resumed with num_iterations 10 and val_interval 1
    engine, run = _toy_trainer(tmp_path, 10, 1)
    epochs = []
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: epochs.append(e.state.iteration))
    with caplog.at_level(logging.INFO):
        run()
    assert engine.state.seen == [9, 10] and epochs == [9, 10]
    assert "had 4 epochs of 2 iterations; this run has 10 epochs of 1" in caplog.text
    # resumed at or past num_iterations: nothing trains, the final checkpoint is written again
    engine, run = _toy_trainer(tmp_path, 4, 1)
    with caplog.at_level(logging.INFO):
        run()
    assert (
        engine.state.seen == [] and torch.load(tmp_path / "model.pt", weights_only=True)["trainer"]["iteration"] == 10
    )
    assert "nothing to train: the run is at iteration 10, num_iterations is 4" in caplog.text
    engine, run = _toy_trainer(tmp_path, 11, 1)  # a checkpoint saved past its run's end resumes too
    run()
    assert engine.state.seen == [11]


def test_iteration_limit_trains_exactly_num_iterations_and_validates_at_the_end(tmp_path, caplog):
    engine, run = _toy_trainer(tmp_path / "few", 5, 2, max_epochs=2)  # too few epochs: warned once
    with caplog.at_level(logging.WARNING):
        run()
    assert engine.state.seen == [1, 2, 3, 4]
    assert caplog.text.count("the trainer's 2 epochs of 2 iterations end before num_iterations 5") == 1
    engine, run = _toy_trainer(tmp_path / "exact", 5, 2)
    epochs = []
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: epochs.append(e.state.iteration))
    run()
    assert engine.state.seen == [1, 2, 3, 4, 5] and epochs == [2, 4, 5]
    assert sorted(os.listdir(tmp_path / "exact")) == ["checkpoint_iteration=5.pt", "model.pt"]
    assert num_epochs(5, 2) == 3 and num_epochs(4, 2) == 2 and num_epochs(1, 100) == 1
    with pytest.raises(ValueError, match="must be >= 1"):
        num_epochs(0, 2)


# --- the saver's files -----------------------------------------------------------------------------------------------


def test_saver_rotates_the_checkpoints_of_earlier_runs_and_removes_stale_temporary_files(tmp_path):
    for name in ("checkpoint_checkpoint_epoch=7.pt", "checkpoint_iteration=3.pt", "notes.pt"):
        torch.save({"x": 1}, tmp_path / name)
    stale, foreign = tmp_path / ".checkpoint_iteration=9.pt.0a1b2c3d.tmp.pt", tmp_path / ".other.pt.0a1b2c3d.tmp"
    stale.write_bytes(b"")
    foreign.write_bytes(b"")
    engine, run = _toy_trainer(tmp_path, 2, 1)
    run()  # no usable checkpoint: starts from scratch, then keeps n_saved=1 of all periodic checkpoints
    assert sorted(os.listdir(tmp_path)) == sorted(
        [".other.pt.0a1b2c3d.tmp", "checkpoint_iteration=2.pt", "model.pt", "notes.pt"]
    )
    ckpt = torch.load(tmp_path / "checkpoint_iteration=2.pt", weights_only=True)
    assert set(ckpt) == {"model", "optimizer", "trainer", "rng", "data"}
    assert ckpt["data"]["samples"] == 4 and ckpt["data"]["seed"] == 0 and ckpt["trainer"]["iteration"] == 2


def test_exception_inside_an_iteration_saves_nothing_between_iterations_saves_the_final_checkpoint(tmp_path):
    engine, run = _toy_trainer(tmp_path / "a", 6, 2)
    engine.add_event_handler(Events.ITERATION_STARTED(once=3), lambda e: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        run()
    assert sorted(os.listdir(tmp_path / "a")) == ["checkpoint_iteration=2.pt"]
    engine, run = _toy_trainer(tmp_path / "b", 6, 2)
    # raised while fetching the batch of iteration 5 (the event filter counts completed iterations): between two
    engine.add_event_handler(Events.GET_BATCH_STARTED(once=4), lambda e: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        run()
    assert engine.state.seen == [1, 2, 3, 4]
    assert torch.load(tmp_path / "b" / "model.pt", weights_only=True)["trainer"]["iteration"] == 4


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_signal_inside_an_iteration_finishes_it_saves_and_the_resumed_run_is_exact(tmp_path, signame, caplog):
    import signal

    from mlm.handlers import StopOnSignal, TrainingStopped

    _, run = _toy_trainer(tmp_path / "a", 7, 3)
    uninterrupted = run()
    engine, run = _toy_trainer(tmp_path / "b", 7, 3)
    StopOnSignal().attach(engine)
    previous = signal.getsignal(getattr(signal, signame))
    # the signal arrives while iteration 5 runs (mid-epoch 2): the iteration completes, then the run stops
    engine.add_event_handler(Events.ITERATION_STARTED(once=5), lambda e: os.kill(os.getpid(), getattr(signal, signame)))
    with (
        caplog.at_level(logging.WARNING),
        pytest.raises(TrainingStopped, match=f"stopped by {signame} after iteration 5"),
    ):
        run()
    assert engine.state.seen == [1, 2, 3, 4, 5]
    assert signal.getsignal(getattr(signal, signame)) is previous, "the previous signal handler is restored"
    assert torch.load(tmp_path / "b" / "model.pt", weights_only=True)["trainer"]["iteration"] == 5
    assert any("run the same command again to resume" in r.getMessage() for r in caplog.records)
    engine, run = _toy_trainer(tmp_path / "b", 7, 3)
    resumed = run()
    assert engine.state.seen == [6, 7]
    assert _max_abs_diff(resumed, uninterrupted) == 0.0


def test_a_second_signal_aborts_at_once():
    import signal

    from mlm.handlers import StopOnSignal

    engine = Engine(lambda e, b: None)
    handler = StopOnSignal(["SIGTERM"])
    handler.attach(engine)

    def two_signals(e):
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)

    engine.add_event_handler(Events.ITERATION_STARTED(once=2), two_signals)
    with pytest.raises(KeyboardInterrupt, match="received twice"):
        engine.run([0] * 5, max_epochs=1)
    assert engine.state.iteration == 2
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
