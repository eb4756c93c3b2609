"""Tests of the bundle-run error hook: the one-line root cause, and a clean exit 1 with daemon threads in torch."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from torch._utils import ExceptionWrapper

from mlm.bundle.errors import error_summary, install_error_hook, is_bundle_run, root_cause


def _raise_chain():
    """What a failing bundle raises: our ValueError wrapped by MONAI's apply_transform and the config parser."""
    try:
        try:
            raise ValueError("/data/landmarks/001.json: not valid JSON (Expecting ',' delimiter: line 2).")
        except ValueError as e:
            raise RuntimeError("applying transform <transforms.landmarks.dictionary.LoadLandmarksd>") from e
    except RuntimeError as e:
        raise RuntimeError("Failed to instantiate component 'monai.data.dataset.CacheDataset'\n set _mode_") from e


def test_summary_is_the_root_cause_not_monai_generic_wrappers():
    with pytest.raises(RuntimeError) as err:
        _raise_chain()
    assert isinstance(root_cause(err.value), ValueError)
    assert error_summary(err.value) == (
        "error: /data/landmarks/001.json: not valid JSON (Expecting ',' delimiter: line 2)."
    )


def test_a_wrapper_that_quotes_the_root_cause_and_adds_the_file_wins():
    try:
        try:
            try:
                raise EOFError("Compressed file ended before the end-of-stream marker was reached")
            except EOFError as e:
                raise ValueError(
                    f"/data/ct.nii.gz: cannot read the image, the file is truncated (EOFError: {e})."
                ) from e
        except ValueError as e:
            raise RuntimeError("applying transform <CheckedLoadImaged>") from e
    except RuntimeError as e:
        exc = e
    assert error_summary(exc).startswith("error: /data/ct.nii.gz: cannot read the image")
    # an empty root message is matched by its type name
    try:
        try:
            raise EOFError()
        except EOFError as e:
            raise ValueError("/data/ct.nii.gz: cannot read the image (EOFError: ).") from e
    except ValueError as e:
        assert error_summary(e) == "error: /data/ct.nii.gz: cannot read the image (EOFError: )."


def test_dataloader_worker_tracebacks_are_searched_for_their_root_cause():
    try:
        _raise_chain()
    except RuntimeError:
        wrapper = ExceptionWrapper(sys.exc_info(), where="in DataLoader worker process 0")
    with pytest.raises(RuntimeError) as err:
        wrapper.reraise()
    assert "Original Traceback" in str(err.value)
    assert error_summary(err.value) == (
        "error: /data/landmarks/001.json: not valid JSON (Expecting ',' delimiter: line 2)."
    )


def test_other_exception_types_keep_their_name_and_one_line():
    assert error_summary(KeyError("image")) == "error: KeyError: 'image'"
    assert error_summary(TypeError("bad\n   operand\ttypes")) == "error: TypeError: bad operand types"
    assert error_summary(FileNotFoundError(2, "No such file or directory", "/x/model.pt")) == (
        "error: /x/model.pt: No such file or directory."
    )
    assert error_summary(ValueError("x" * 5000)).endswith("...") and len(error_summary(ValueError("x" * 5000))) < 1100
    assert error_summary(AssertionError()) == "error: AssertionError"
    assert error_summary(KeyboardInterrupt()) == "error: interrupted."
    from mlm.handlers import TrainingStopped

    stopped = TrainingStopped("training stopped by SIGTERM after iteration 43")
    assert error_summary(stopped) == (
        "error: training stopped by SIGTERM after iteration 43; run the same command again to resume."
    )


def test_not_installed_outside_bundle_runs():
    assert not is_bundle_run()
    assert sys.excepthook is sys.__excepthook__ or "mlm" not in getattr(sys.excepthook, "__module__", "")


_DAEMON_SCRIPT = textwrap.dedent(
    """
    import sys, threading, time
    import torch
    {install}
    x = torch.rand(256, 256)
    started = threading.Event()

    def work():  # a daemon thread inside torch operators (GIL released), like CacheDataset's pool workers
        started.set()
        while True:
            torch.sqrt(x @ x)

    for _ in range(2):
        threading.Thread(target=work, daemon=True).start()
    started.wait()
    time.sleep(0.2)
    print("some output", flush=False)
    try:
        raise ValueError("/data/landmarks/001.json: not valid JSON.")
    except ValueError as e:
        raise RuntimeError("Failed to instantiate component") from e
    """
)


def test_hook_exits_1_with_the_summary_last_even_with_daemon_threads_in_torch():
    # without the hook this script aborts (5 of 5 runs here): exit 134, "terminate called without an active exception"
    script = _DAEMON_SCRIPT.format(install="from mlm.bundle.errors import install_error_hook; install_error_hook()")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env, encoding="utf-8"
    )
    assert res.returncode == 1, res.stderr[-2000:]
    assert "Traceback (most recent call last)" in res.stderr and "terminate called" not in res.stderr
    assert res.stderr.splitlines()[-1] == "error: /data/landmarks/001.json: not valid JSON."
    assert res.stdout == "some output\n"  # buffered output is flushed before os._exit


def test_install_error_hook_is_idempotent():
    before = sys.excepthook
    try:
        install_error_hook()
        hook = sys.excepthook
        install_error_hook()
        assert sys.excepthook is hook and hook is not before
    finally:
        sys.excepthook = before
        import mlm.bundle.errors as errors

        errors._installed = False
