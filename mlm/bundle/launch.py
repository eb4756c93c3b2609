"""Launch the repository's bundles with ``python -m monai.bundle run`` from Python (demo, accuracy scripts, tests).

Each call is a separate process, exactly the command a user types, run in the bundle's folder so that the
bundle's relative paths (``configs/...``, ``bundle_root``) resolve as documented.
"""

from __future__ import annotations

import codecs
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from mlm.data.datalist import datalist_split_names, read_datalist_json

__all__ = [
    "BUNDLES_DIR",
    "bundle_command",
    "config_list",
    "ensure_phantom",
    "read_metrics",
    "run_bundle",
    "run_bundle_step",
    "stream_progress",
]

#: the root of this checkout and its ``bundles/`` folder
REPO_DIR = Path(__file__).resolve().parents[2]
BUNDLES_DIR = REPO_DIR / "bundles"


def ensure_phantom(name: str, dataset_dir: str | os.PathLike, num_images: int = 60, seed: int = 0) -> Path:
    """Generate phantom ``name`` into ``dataset_dir`` with ``scripts/generate_phantoms.py`` unless it has a datalist.

    Prints the command it runs. Returns the datalist's path.
    """
    dataset_dir = Path(dataset_dir)
    datalist = dataset_dir / "datalist.json"
    if datalist.is_file():
        found = _datalist_image_count(datalist)
        print(f"using the existing {name} phantom at {dataset_dir} ({found} images)", flush=True)
        if found != num_images:
            print(
                f"note: {num_images} images were asked for; delete {dataset_dir} (or pass another folder) to "
                f"generate them, the figures of a run on {found} images differ from the documented ones",
                flush=True,
            )
        return datalist
    cmd = [sys.executable, "scripts/generate_phantoms.py", name, "--out", str(dataset_dir)]
    cmd += ["--num-images", str(num_images), "--seed", str(seed), "--no-progress"]
    print(f"\n$ python {shlex.join(cmd[1:])}", flush=True)
    subprocess.run(cmd, cwd=REPO_DIR, check=True)
    return datalist


def _datalist_image_count(datalist: Path) -> int:
    """Number of items over all splits of a datalist JSON."""
    data = read_datalist_json(datalist)
    return sum(len(data[split]) for split in datalist_split_names(data))


def config_list(configs: Sequence[str]) -> str:
    """The ``--config_file`` value that merges ``configs`` (file names inside ``configs/``) in order."""
    return "[" + ",".join(f"'configs/{c}'" for c in configs) + "]"


def bundle_command(configs: Sequence[str], overrides: Sequence[str] = (), torchrun: int = 0) -> list[str]:
    """The ``python -m monai.bundle run`` argument list for ``configs`` (file names inside ``configs/``).

    Args:
        configs: config files merged in order, e.g. ``["train.yaml", "cpu.yaml"]``.
        overrides: extra ``--key value`` arguments.
        torchrun: number of processes to launch with ``torch.distributed.run`` (0: a plain process).
    """
    launcher = [sys.executable, "-m"]
    if torchrun:
        # --standalone: a free local port per launch (two launches at once, e.g. parallel tests, do not collide)
        launcher += ["torch.distributed.run", "--standalone", "--nnodes=1", f"--nproc_per_node={torchrun}", "-m"]
    return launcher + ["monai.bundle", "run", "--config_file", config_list(configs), *[str(o) for o in overrides]]


def _bundle_process(
    bundle: str, configs: Sequence[str], overrides: Sequence[str], torchrun: int = 0, env: dict[str, str] | None = None
) -> tuple[list[str], Path, dict[str, str]]:
    """``(command, bundle folder, environment)`` of a ``python -m monai.bundle run`` of ``bundles/<bundle>``.

    Raises:
        FileNotFoundError: ``bundles/<bundle>`` does not exist.
    """
    folder = BUNDLES_DIR / bundle
    if not folder.is_dir():
        raise FileNotFoundError(f"no bundle {bundle!r} in {BUNDLES_DIR}")
    return (
        bundle_command(configs, overrides, torchrun),
        folder,
        {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})},
    )


def run_bundle(
    bundle: str,
    configs: Sequence[str],
    overrides: Sequence[str] = (),
    torchrun: int = 0,
    capture: bool = True,
    timeout: float | None = None,
    log_file: str | os.PathLike | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run ``python -m monai.bundle run`` in ``bundles/<bundle>`` and return the finished process.

    Args:
        bundle: bundle folder name under ``bundles/`` (e.g. ``"scn_spine_ct"``).
        configs: config files merged in order.
        overrides: extra ``--key value`` arguments.
        torchrun: processes for ``torch.distributed.run`` (0: a plain process).
        capture: capture stdout/stderr (``result.stdout``); otherwise they go to the terminal or ``log_file``.
        timeout: seconds before the process is killed (None: no limit).
        log_file: with ``capture=False``, write stdout and stderr to this file instead of the terminal.
        env: extra environment variables of the process (e.g. ``{"OMP_NUM_THREADS": "1"}``).

    Raises:
        FileNotFoundError: ``bundles/<bundle>`` does not exist.
    """
    cmd, folder, env = _bundle_process(bundle, configs, overrides, torchrun, env)
    if capture:
        return subprocess.run(
            cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout, encoding="utf-8"
        )
    if log_file is None:
        return subprocess.run(cmd, cwd=folder, env=env, timeout=timeout)
    with open(log_file, "w", encoding="utf-8") as log:
        return subprocess.run(cmd, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout)


#: lines of a bundle run's output shown in the terminal by :func:`run_bundle_step` (the rest goes to its log only)
PROGRESS_LINES = re.compile(
    r"Metrics --|Key metric|train_loss: |^error: |^evaluated |^MRE |^SDR|^normalised|^ID rate|^report "
)


def stream_progress(process: subprocess.Popen, log, terminal=None, every: int = 50) -> None:
    """Copy a bundle run's output to ``log`` and show its progress in ``terminal`` while it runs.

    ``process`` has a binary ``stdout`` pipe. Shown: ignite's progress bar (redrawn on one line), every ``every``-th ``train_loss`` log line, validation
    metrics, the evaluation summary and the final error line; everything else is in the log file only.
    """
    terminal = terminal or sys.stdout
    losses = 0
    buffer = ""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # bytes: text mode would turn \r into \n
    for raw in iter(lambda: process.stdout.read1(4096), b""):
        chunk = decoder.decode(raw)
        log.write(chunk)
        buffer += chunk
        *parts, buffer = re.split(r"(\r|\n)", buffer)
        for text, sep in zip(parts[::2], parts[1::2]):
            if sep == "\r" and "|" in text and "/" in text:  # a progress-bar redraw
                terminal.write("\r  " + text.strip()[-110:])
            elif sep == "\n" and PROGRESS_LINES.search(text):
                if "train_loss: " in text:
                    losses += 1
                    if losses % every:
                        continue
                terminal.write("\r  " + text.strip()[-150:] + "\n")
        terminal.flush()
    terminal.write("\n")
    terminal.flush()


def run_bundle_step(
    bundle: str,
    configs: Sequence[str],
    overrides: Sequence[str],
    log_file: str | os.PathLike,
    env: dict[str, str] | None = None,
) -> str:
    """One step of a scripted workflow: print the command as a user would type it, run it appending its output to
    ``log_file`` (a resumed step keeps the earlier legs' output) and showing its progress (:func:`stream_progress`)
    in the terminal. ``env``: extra environment variables of the process.

    Returns:
        the printed command line (``cd bundles/<bundle> && python -m monai.bundle run ...``).

    Raises:
        FileNotFoundError: ``bundles/<bundle>`` does not exist.
        RuntimeError: the run failed; the message holds the end of its log and the log's path.
    """
    cmd, folder, env = _bundle_process(bundle, configs, overrides, env=env)
    printable = f'python -m monai.bundle run --config_file "{config_list(configs)}" ' + shlex.join(map(str, overrides))
    line = f"(cd bundles/{bundle} && {printable})"
    print(f"\n$ {line}", flush=True)
    t0 = time.perf_counter()
    with open(log_file, "a", encoding="utf-8") as log:
        process = subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            stream_progress(process, log)
        finally:
            process.wait()
    print(f"  {time.perf_counter() - t0:.0f} s, log: {log_file}", flush=True)
    if process.returncode != 0:
        tail = Path(log_file).read_text(encoding="utf-8", errors="replace")[-4000:]
        raise RuntimeError(f"{bundle} failed (exit {process.returncode}); log in {log_file}:\n{tail}")
    return line


def read_metrics(output_dir: str | os.PathLike) -> dict:
    """The ``metrics.json`` that an evaluate run wrote to ``output_dir``.

    Raises:
        FileNotFoundError: there is no ``metrics.json`` (the evaluation did not finish).
    """
    path = Path(output_dir) / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the evaluation did not finish (see its log)")
    return json.loads(path.read_text(encoding="utf-8"))
