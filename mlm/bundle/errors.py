"""How a failing bundle run ends: the traceback, then one line naming the file and the problem, exit status 1.

Why. ``python -m monai.bundle run`` on bad input (a corrupt landmark file, an unreadable image, a wrong
``dataset_dir``) used to end with ~100 lines of traceback whose last line was MONAI's generic "Failed to instantiate
component ..." or "Failed to evaluate ConfigExpression", then ``terminate called without an active exception`` and
exit status 134 (SIGABRT). The abort: MONAI's ``CacheDataset`` fills its cache with a
``multiprocessing.pool.ThreadPool`` whose daemon worker threads go on transforming the remaining items after one
item failed (the pool's ``terminate()`` does not join thread workers). The main thread's exception ends the
interpreter while a worker is inside a torch operator that released the GIL; at finalization CPython stops a daemon
thread that tries to take the GIL back with ``pthread_exit``, whose forced unwinding crosses a ``noexcept`` C++
frame of torch (pybind11's ``gil_scoped_release`` destructor) and calls ``std::terminate``. Any daemon thread that is
inside such native code when the interpreter finalizes aborts it the same way.

The fix: :func:`install_error_hook` replaces ``sys.excepthook``, which runs for an uncaught exception before the
interpreter finalizes. The hook prints the traceback as usual, runs the ``atexit`` functions (logging flush, DataLoader
worker processes ended, ...), prints ``error: <file>: <problem>`` taken from the root cause of the exception chain
(:func:`error_summary`) and registers one last ``atexit`` function that flushes and leaves with ``os._exit(1)`` (130
for ``KeyboardInterrupt``): the finalization that tears down daemon threads never runs. Leaving from an ``atexit``
function rather than from the hook lets a hook that wraps this one print what it collected: ``torch.distributed``
installs one that buffers ``sys.stderr`` and prefixes every line with ``[rankN]:``. Under ``torchrun`` the summary
also goes to the launcher's error file, so its failure report shows it.

``import mlm.bundle`` installs the hook when the process is ``python -m monai.bundle`` (every bundle config imports
``mlm.bundle``; ``torchrun`` workers run the same module); other programs call :func:`install_error_hook` if they
want it.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import sys
import time
import traceback
from types import TracebackType

from transforms.io.atomic import atomic_write

__all__ = ["error_summary", "install_error_hook", "is_bundle_run", "root_cause"]

#: longest error line printed (characters after ``"error: "``)
MAX_LINE = 1000
#: exception types whose message is printed without the type name (it says what went wrong on its own)
_PLAIN = ("ValueError", "FileNotFoundError", "FileExistsError", "NotADirectoryError", "IsADirectoryError", "OSError")
_CHAIN_MARKERS = (
    "The above exception was the direct cause of the following exception:",
    "During handling of the above exception, another exception occurred:",
)
_EXC_LINE = re.compile(r"^([A-Za-z_][\w.]*)(?::\s?(.*))?$")
_installed = False


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception of ``exc``'s chain: follow ``__cause__``, else ``__context__`` (unless suppressed)."""
    return _chain(exc)[0]


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc``'s chain, innermost first (``__cause__``, else an unsuppressed ``__context__``)."""
    chain, seen = [exc], {id(exc)}
    while True:
        nxt = exc.__cause__
        if nxt is None and not exc.__suppress_context__:
            nxt = exc.__context__
        if nxt is None or id(nxt) in seen:
            return chain[::-1]
        chain.append(nxt)
        seen.add(id(nxt))
        exc = nxt


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _format(type_name: str, message: str) -> str:
    """``message`` (or ``Type: message``) on one line, cut to :data:`MAX_LINE` characters."""
    short = type_name.rsplit(".", 1)[-1]
    message = _one_line(message)
    if not message:
        text = short
    elif short in _PLAIN:
        text = message
    else:
        text = f"{short}: {message}"
    return text if len(text) <= MAX_LINE else text[: MAX_LINE - 3] + "..."


def _worker_chain(text: str) -> list[tuple[str, str]] | None:
    """``(type name, message)`` of each exception of a traceback re-raised as text, innermost first, or None.

    torch re-raises a DataLoader worker's exception as a new one whose message is "Caught X in DataLoader worker
    process 0." followed by "Original Traceback (most recent call last): ...": the worker's whole chain as text,
    innermost first.
    """
    _, found, rest = text.partition("Original Traceback (most recent call last):")
    if not found:
        return None
    segments = [rest]
    for marker in _CHAIN_MARKERS:
        segments = [part for seg in segments for part in seg.split(marker)]
    chain = []
    for seg in segments:
        lines = [ln for ln in seg.strip("\n").splitlines() if ln != "Traceback (most recent call last):"]
        for i, line in enumerate(lines):
            m = _EXC_LINE.match(line) if line and not line[0].isspace() else None
            if m:
                chain.append((m.group(1), " ".join([m.group(2) or "", *lines[i + 1 :]])))
                break
    return chain or None


def _describe(exc: BaseException) -> list[tuple[str, str]]:
    """``(type name, message)`` of ``exc``; the worker's chain for a DataLoader worker's re-raised exception."""
    text = str(exc)
    worker = _worker_chain(text)
    if worker is not None:
        return worker
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return [("OSError", f"{exc.filename}: {exc.strerror}.")]
    return [(type(exc).__name__, text)]


def error_summary(exc: BaseException) -> str:
    """One line ``error: <problem>`` for a failed run, from the root cause of ``exc``'s chain.

    The root cause is the innermost exception of the chain (:func:`root_cause`), or the outermost one that still
    quotes it: a wrapper that adds the file name, ``raise ValueError(f"{path}: cannot read the image ({e})") from
    e``, wins over the bare reader error; MONAI's generic wrappers ("applying transform ...", "Failed to
    instantiate component ...") never do. A DataLoader worker's re-raised traceback is searched the same way.
    The project's own errors name the file first (``/data/x.nii.gz: expected a 3D image, ...``) and are printed as
    they are, as are ``ValueError`` and ``OSError`` messages (an ``OSError`` with a file name as
    ``<file>: <reason>``); other types as ``<Type>: <message>``. Whitespace (newlines included) is collapsed, so
    the summary is always a single line of at most :data:`MAX_LINE` characters after ``error: ``.
    """
    cause = root_cause(exc)
    if isinstance(cause, KeyboardInterrupt):
        # mlm.handlers.TrainingStopped says after which iteration the checkpoint was saved
        return f"error: {cause}; run the same command again to resume." if str(cause) else "error: interrupted."
    chain = [item for e in _chain(exc) for item in _describe(e)]
    chosen = 0
    for j in range(1, len(chain)):
        name, message = chain[chosen]
        key = _one_line(message)[:60] or name
        if key in _one_line(chain[j][1]):
            chosen = j
    return "error: " + _format(*chain[chosen])


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed or broken stream must not keep the process alive
            pass


def _record_for_torchrun(line: str) -> None:
    """Under ``torchrun``, write the error file the launcher reads (``TORCHELASTIC_ERROR_FILE``, the format of
    ``torch.distributed.elastic``'s ``@record``), so that its failure summary shows the one-line summary instead of
    "To enable traceback see ..." (the traceback itself is on the worker's stderr already)."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    data = {
        "message": {
            "message": line,
            "extraInfo": {
                "py_callstack": line,
                "timestamp": str(int(time.time())),
            },
        }
    }
    atomic_write(path, json.dumps(data))


def _exit_now(code: int) -> None:
    """The last ``atexit`` function: flush and leave before interpreter finalization tears down daemon threads."""
    _flush()
    os._exit(code)


def _excepthook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    """Print the traceback, run the atexit functions, print the one-line summary; the process then ``os._exit``s.

    The exit itself is deferred to an ``atexit`` function registered here (the only one left): a hook that wraps
    this one, e.g. ``torch.distributed``'s, which buffers ``sys.stderr`` and prefixes each line with the rank,
    still writes its buffer when this hook returns.
    """
    code = 130 if issubclass(exc_type, KeyboardInterrupt) else 1
    try:
        try:
            traceback.print_exception(exc_type, exc, tb)
            line = error_summary(exc)
        except Exception:  # never let the hook itself fail
            line = f"error: {exc_type.__name__}"
        try:
            atexit._run_exitfuncs()  # what a normal exit runs first: logging flush, child processes ended, ...
        except BaseException:
            pass
        _flush()
        sys.stderr.write(line + "\n")
        _flush()
        try:
            _record_for_torchrun(line)
        except Exception:
            pass
    except BaseException:
        pass
    finally:
        atexit.register(_exit_now, code)


def install_error_hook() -> None:
    """Make an uncaught exception end the process with its traceback, one ``error: ...`` line and exit status 1.

    Replaces ``sys.excepthook`` (idempotent). The process then leaves with ``os._exit`` after running the
    ``atexit`` functions, skipping interpreter finalization: daemon threads still in native code (see the module
    docstring) cannot abort it. Exit status 130 for ``KeyboardInterrupt``. Has no effect in an interactive
    interpreter (``python -i``, the REPL), whose prompt reports exceptions through the same hook.
    """
    global _installed
    if _installed or hasattr(sys, "ps1") or sys.flags.interactive:
        return
    sys.excepthook = _excepthook
    _installed = True


def is_bundle_run() -> bool:
    """Whether this process is ``python -m monai.bundle`` (also a ``torchrun ... -m monai.bundle`` worker)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec is not None and spec.name in ("monai.bundle.__main__", "monai.bundle")
