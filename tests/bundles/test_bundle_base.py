"""The bundles share one base (``bundles/base/configs``) and hold only their facts: nothing is copied between them.

A bundle's ``configs/`` holds links to the base's configs (the ones ``python -m monai.bundle run`` is given), its
``facts.yaml`` (read by the base through ``'%configs/facts.yaml#key'`` macros), ``recipe.yaml`` (a link to the
method's hyper-parameters in the base), ``metadata.json`` and bundle-specific overlays (``scn_spine_ct``'s demo sizes).
These tests read files only (no torch, no MONAI run).
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
from _bundle_runs import BUNDLES

from mlm.bundle.configs import resolve_file_macros

BASE = BUNDLES / "base" / "configs"
#: the repository's bundles: the folders of bundles/ with a model-zoo metadata file
ALL_BUNDLES = sorted(p.name for p in BUNDLES.iterdir() if (p / "configs" / "metadata.json").is_file())
#: the configs the README's commands name, shared by every bundle (links into the base)
SHARED = (
    "train.yaml",
    "inference.yaml",
    "evaluate.yaml",
    "multi_gpu_train.yaml",
    "cpu.yaml",
    "unet.yaml",
    "refine.yaml",
    "refine_inference.yaml",
    "attack.yaml",
    "train_sat.yaml",
    "train_amat.yaml",
    "robustness.yaml",
    "logging.conf",
)
#: the longest block of consecutive config lines two bundles may have in common (the issue's bar: more than five fails)
MAX_COMMON_BLOCK = 5
#: non-comment lines of a bundle's facts.yaml: a new 2D or 3D bundle is a few dozen lines
MAX_FACT_LINES = 40
_CONFIG_SUFFIXES = (".yaml", ".yml", ".conf")


def config_lines(path: Path) -> list[str]:
    """The config lines of a YAML or logging.conf file: stripped, without blank lines and full-line comments."""
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith(("#", ";"))]


def own_config_files(bundle: str) -> list[Path]:
    """The config files a bundle holds itself (not links into the base), metadata.json aside (the zoo's, per bundle)."""
    return sorted(
        p for p in (BUNDLES / bundle / "configs").iterdir() if p.suffix in _CONFIG_SUFFIXES and not p.is_symlink()
    )


def common_blocks(a: list[str], b: list[str], length: int) -> list[list[str]]:
    """The runs of ``length`` consecutive lines of ``a`` that also occur in ``b``."""
    runs = {tuple(b[i : i + length]) for i in range(len(b) - length + 1)}
    return [list(a[i : i + length]) for i in range(len(a) - length + 1) if tuple(a[i : i + length]) in runs]


def test_common_blocks_finds_a_copied_run_and_ignores_comments(tmp_path):
    block = [f"key_{i}: {i}" for i in range(6)]
    (tmp_path / "a.yaml").write_text(
        "\n".join(["x: 1", *block[:3], "# a comment", "", *block[3:]]) + "\n", encoding="utf-8"
    )
    (tmp_path / "b.yaml").write_text("\n".join([*block, "y: 2"]) + "\n", encoding="utf-8")
    a, b = config_lines(tmp_path / "a.yaml"), config_lines(tmp_path / "b.yaml")
    assert common_blocks(a, b, 6) == [block]
    assert common_blocks(a, b[1:], 6) == []


def test_bundles_are_found():
    assert set(ALL_BUNDLES) >= {"scn_ceph", "scn_hand_mri", "scn_hand_xray", "scn_spine_ct"}
    assert "base" not in ALL_BUNDLES


def test_no_block_of_more_than_five_config_lines_is_repeated_across_bundles():
    files = {bundle: own_config_files(bundle) for bundle in ALL_BUNDLES}
    repeated = []
    for files_a, files_b in itertools.combinations(files.values(), 2):
        for fa, fb in itertools.product(files_a, files_b):
            found = common_blocks(config_lines(fa), config_lines(fb), MAX_COMMON_BLOCK + 1)
            if found:
                block = "\n    ".join(found[0])
                repeated.append(f"{fa.relative_to(BUNDLES)} and {fb.relative_to(BUNDLES)} share:\n    {block}")
    assert not repeated, "shared config belongs in bundles/base/configs:\n" + "\n".join(repeated)


@pytest.mark.parametrize("bundle", ALL_BUNDLES)
def test_the_configs_the_readme_names_are_links_into_the_base(bundle):
    configs = BUNDLES / bundle / "configs"
    for name in (*SHARED, "recipe.yaml"):
        path = configs / name
        assert path.is_symlink(), f"{bundle}/configs/{name} should be a link into bundles/base/configs"
        assert path.resolve().parent == BASE.resolve() and path.is_file(), f"{path} -> {path.resolve()}"


@pytest.mark.parametrize("bundle", ALL_BUNDLES)
def test_a_bundles_facts_are_a_few_dozen_lines_and_its_only_config(bundle):
    own = own_config_files(bundle)
    facts = BUNDLES / bundle / "configs" / "facts.yaml"
    assert facts in own
    assert len(config_lines(facts)) <= MAX_FACT_LINES, f"{facts}: {len(config_lines(facts))} config lines"
    # anything else a bundle holds is an overlay of its own (scn_spine_ct's demo sizes), not a copy of a base config
    assert not {p.name for p in own} & set(SHARED)


def _bundle_file_macros(config) -> list[tuple[str, str]]:
    """``(file, top-level key)`` of every ``'%configs/<file>#<key>...'`` value in a config."""
    if isinstance(config, dict):
        return [m for v in config.values() for m in _bundle_file_macros(v)]
    if isinstance(config, list):
        return [m for v in config for m in _bundle_file_macros(v)]
    match = re.fullmatch(r"%(configs/[\w.]+\.yaml)#(\w+).*", config) if isinstance(config, str) else None
    return [match.groups()] if match else []


@pytest.mark.parametrize("bundle", ALL_BUNDLES)
def test_every_fact_the_base_reads_is_given_and_every_fact_is_read(bundle):
    """The base's ``'%configs/facts.yaml#key'`` macros resolve in every bundle (as MONAI resolves them when it runs
    in the bundle's folder), and a bundle's facts.yaml and recipe.yaml hold nothing the base does not read."""
    import yaml

    folder = BUNDLES / bundle
    read: dict[str, set[str]] = {}
    for config in sorted(BASE.glob("*.yaml")):
        content = yaml.safe_load(config.read_text(encoding="utf-8"))
        for file, key in _bundle_file_macros(content):
            read.setdefault(file, set()).add(key)
        resolve_file_macros(content, folder)  # raises naming the missing fact
    assert set(read) == {"configs/facts.yaml", "configs/recipe.yaml"}
    for file, keys in read.items():
        given = set(yaml.safe_load((folder / file).read_text(encoding="utf-8")))
        assert given == keys, (
            f"{bundle}/{file}: not read by the base {sorted(given - keys)}, missing {sorted(keys - given)}"
        )
