"""Move a trained bundle model's landmarks onto the user's target points (e.g. letters) with a targeted attack.

Attacks one 2D image with the model of a bundle (its inference preprocessing, network and decoder, and the
``attack`` overlay's settings: ATI, eps 8 grey levels, step 0.05 eps, 300 iterations), every landmark with a target
moved to it (an empty row of the target file keeps a landmark still), and writes to ``--out``:

- ``adversarial.png``: the adversarial image in the network's input grid, as 0-255 grey levels;
- ``perturbation_x8.png``: the perturbation magnified 8 times around mid-grey (128 + 8 x delta grey levels);
- ``overlay.png``: the adversarial image with the targets (green o) and the attacked prediction (red x);
- ``clean_overlay.png``: the clean image with the targets and the clean prediction;
- ``targets.csv``: the targets used, in pixels of the original image (``x,y``; readable by ``--targets``);
- ``letters_attack.json``: the settings, per landmark the target, the clean and the adversarial prediction (pixels
  of the original image) and the adversarial prediction's distance to its target (mm; px for pixel-only images),
  and the perturbation's L-inf norm in grey levels.

Targets: ``--targets FILE`` (CSV ``x,y`` or JSON, one row per landmark, pixels of the original image, see
:mod:`mlm.attacks.letters`), or ``--letters TEXT``: points drawn along the strokes of block letters inside the
paper's goal box of the image (the authors drew M, I, C, A with the 19 cephalometric landmarks; these shapes are this
project's own). A generated example for an ISBI 2015 image (1935 x 2400 px): ``scripts/examples/letter_M_isbi2015.csv``.

Example::

    python scripts/attack_letters.py --bundle mtunet_ceph --ckpt bundles/mtunet_ceph/models/model.pt \\
        --image data/isbi2015/RawImage/Test1Data/151.bmp --spacing 0.1 0.1 \\
        --targets scripts/examples/letter_M_isbi2015.csv --out eval/letters_M [--iterations 300 --method ati]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    from mlm.bundle.configs import add_overrides_argument

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", required=True, help="bundle folder name (e.g. mtunet_ceph, scn_ceph)")
    p.add_argument("--ckpt", required=True, help="the model's checkpoint")
    p.add_argument("--image", required=True, help="the image to attack (2D)")
    p.add_argument("--spacing", type=float, nargs="+", default=None, help="pixel spacing (mm) of a pixel-only image")
    targets = p.add_mutually_exclusive_group(required=True)
    targets.add_argument("--targets", help="target points: CSV (x,y) or JSON, pixels of the original image")
    targets.add_argument("--letters", help="draw the targets along these letters (e.g. M, MICA) in the goal box")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--method", choices=["ti", "ati", "pgd"], default="ati")
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--eps", type=float, default=8.0, help="eps in grey levels of the 0-255 scale")
    p.add_argument("--magnify", type=float, default=8.0, help="magnification of the perturbation image")
    p.add_argument("--no-cpu", action="store_true", help="leave out configs/cpu.yaml (a paper-sized model)")
    add_overrides_argument(p, help="a config override of the model (repeat as needed, e.g. num_filters=32)")
    return p


def _save_grey(path: Path, view: np.ndarray) -> Path:
    """A ``(H, W)`` grey-level picture (0-255) as PNG, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from transforms.io.atomic import atomic_write

    pic = np.clip(view, 0, 255)
    return atomic_write(path, lambda tmp: plt.imsave(tmp, pic, cmap="gray", vmin=0, vmax=255, format="png"))


def _finite_mean(values: np.ndarray) -> float | None:
    """Mean of the finite values (a landmark the decoder could not place is NaN), None if there is none."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None


def _text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from mlm.attacks import (
        letter_points,
        network_to_original_pixels,
        original_pixels_to_network,
        read_target_points,
        to_grey_levels,
        write_target_points,
    )
    from mlm.bundle import bundle_config_parser
    from mlm.bundle.checkpoints import load_checkpoint
    from mlm.bundle.launch import BUNDLES_DIR
    from mlm.reports import write_metrics_json
    from mlm.visualize import display_2d, plot_overlay
    from transforms.geometry import image_affine, voxel_to_world

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    configs = ["inference.yaml", *([] if args.no_cpu else ["cpu.yaml"]), "attack.yaml"]
    overrides = {
        "ckpt_path": str(Path(args.ckpt).resolve()),
        "attack_method": args.method,
        "attack_iterations": args.iterations,
        "attack_eps_255": args.eps,
        "attack_checkpoints": [],
        "num_workers": 0,
        **dict(args.overrides),
    }
    parser = bundle_config_parser(BUNDLES_DIR / args.bundle, configs, overrides)
    parser.get_parsed_content("initialize")
    dims = int(parser.get_parsed_content("spatial_dims"))
    if dims != 2:
        raise SystemExit(f"attack_letters: {args.bundle} is a {dims}D bundle; target letters need a 2D model.")
    normalization = parser.get_parsed_content("intensity_normalization")
    names = list(parser.get_parsed_content("landmark_names"))
    num = len(names)
    network = parser.get_parsed_content("network")
    device = parser.get_parsed_content("device")
    ckpt = load_checkpoint(args.ckpt, map_location=device)
    network.load_state_dict(ckpt["model"] if isinstance(ckpt.get("model"), dict) else ckpt)
    network.eval()
    attack = parser.get_parsed_content("attack")
    decoder = parser.get_parsed_content("attack_decoder")
    preprocessing = parser.get_parsed_content("preprocessing")
    item = {"image": str(Path(args.image).resolve())}
    if args.spacing:
        item["spacing"] = [float(s) for s in args.spacing]
    image = preprocessing(item)["image"]  # (1, *S), the network input grid

    size = tuple(int(s) for s in image.shape[1:])
    if args.targets:
        targets_px = read_target_points(args.targets, num)
        if targets_px.shape[1] != dims:
            raise SystemExit(f"attack_letters: {args.targets} holds {targets_px.shape[1]}D points for a 2D image.")
        goals = original_pixels_to_network(targets_px, image, args.spacing)
    else:
        box_min, box_max = parser.get_parsed_content("attack_target_box")
        lo = [f * (s - 1) for f, s in zip(box_min, size)]
        hi = [f * (s - 1) for f, s in zip(box_max, size)]
        goals = letter_points(args.letters, num, lo, hi)
        targets_px = network_to_original_pixels(goals, image, args.spacing)
    if not np.isfinite(goals).all(axis=-1).any():
        raise SystemExit("attack_letters: no target point given (every row is empty).")
    write_target_points(out / "targets.csv", targets_px, names)

    x = image.as_tensor()[None].to(device=device, dtype=torch.float32)
    goals_t = torch.as_tensor(goals, dtype=torch.float32, device=device)[None]
    result = attack(network, x, goals_t, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        adv_vox = decoder(network(result.adversarial))[0].numpy()
    clean_vox = decoder(result.clean_output)[0].numpy()

    affine = image_affine(image, dims)
    world = lambda v: voxel_to_world(torch.as_tensor(v, dtype=torch.float64), affine).numpy()  # noqa: E731
    dist = np.sqrt(((world(adv_vox) - world(goals)) ** 2).sum(axis=-1))
    clean_dist = np.sqrt(((world(clean_vox) - world(goals)) ** 2).sum(axis=-1))
    unit = str(image.meta.get("spatial_units", "mm"))

    adv = result.adversarial[0, 0].detach().cpu()
    clean = x[0, 0].detach().cpu()
    grey_adv = to_grey_levels(adv, normalization, dims).numpy()
    delta_grey = (to_grey_levels(adv, normalization, dims) - to_grey_levels(clean, normalization, dims)).numpy()
    _save_grey(out / "adversarial.png", display_2d(grey_adv)[0])
    _save_grey(
        out / "perturbation_x8.png" if args.magnify == 8 else out / f"perturbation_x{args.magnify:g}.png",
        display_2d(128.0 + args.magnify * delta_grey)[0],
    )
    title = f"{args.bundle} {args.method.upper()} {args.iterations} it, eps {args.eps:g}/255"
    plot_overlay(
        grey_adv, adv_vox, goals, out / "overlay.png", title=f"{title}: prediction (red x) vs target (green o)"
    )
    plot_overlay(
        to_grey_levels(clean, normalization, dims).numpy(),
        clean_vox,
        goals,
        out / "clean_overlay.png",
        title="clean image: prediction (red x) vs target (green o)",
    )

    moved = np.isfinite(goals).all(axis=-1)
    report = {
        "bundle": args.bundle,
        "ckpt": str(args.ckpt),
        "image": str(args.image),
        "attack": repr(attack),
        "eps_255": args.eps,
        "linf_grey_levels": float(np.abs(delta_grey).max()),
        "units": unit,
        "mean_distance_to_target": _finite_mean(dist[moved]),
        "mean_clean_distance_to_target": _finite_mean(clean_dist[moved]),
        "num_without_prediction": int((~np.isfinite(dist[moved])).sum()),
        "landmarks": [
            {
                "name": n,
                "moved": bool(m),
                "target_px": t.tolist(),
                "clean_px": c.tolist(),
                "adversarial_px": a.tolist(),
                "distance_to_target": float(d) if m else None,
            }
            for n, m, t, c, a, d in zip(
                names,
                moved,
                targets_px,
                network_to_original_pixels(clean_vox, image, args.spacing),
                network_to_original_pixels(adv_vox, image, args.spacing),
                dist,
            )
        ],
    }
    write_metrics_json(out / "letters_attack.json", report)
    print(
        f"{int(moved.sum())} landmarks moved: mean distance to target {_text(report['mean_distance_to_target'])} "
        f"{unit} (clean {_text(report['mean_clean_distance_to_target'])} {unit}; "
        f"{report['num_without_prediction']} without prediction), |delta| <= {report['linf_grey_levels']:.2f} grey "
        f"levels; written to {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
