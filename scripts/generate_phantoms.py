"""Generate the phantom datasets (the project's embedded default data) in the real datasets' layouts.

Examples::

    python scripts/generate_phantoms.py spine_ct --out data/spine_phantom                # 120 scans, 2 mm
    python scripts/generate_phantoms.py spine_ct --out /tmp/sp --num-images 6 --spacing 4 --size-xy 32
    python scripts/generate_phantoms.py ceph --out data/ceph_phantom --pixel-size 0.8
    python scripts/generate_phantoms.py all --out data/phantoms --num-images 12 --seed 1
    python scripts/generate_phantoms.py spine_ap --out data/phantoms/spine_ap              # AASCE layout, 20 JPEGs
    python scripts/generate_phantoms.py chest --out data/phantoms/chest --size 256 256     # GU2Net layout, 60 PNGs

``all`` writes one sub-folder per dataset (``spine_ct``, ``ceph``, ``hand_xray``, ``hand_mri``) under ``--out``;
``spine_ap`` (training and test splits only, as the AASCE layout) is generated on its own.
Each dataset root gets a ``datalist.json`` (generic format, see ``docs/architecture.md``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mlm.data.phantoms import (
    write_cephalogram_dataset,
    write_hand_mri_dataset,
    write_hand_xray_dataset,
    write_spine_ct_dataset,
)


def _common(p: argparse.ArgumentParser, default_images: int) -> None:
    p.add_argument("--out", type=Path, required=True, help="dataset root folder (created)")
    p.add_argument("--num-images", type=int, default=default_images, help=f"total images (default {default_images})")
    p.add_argument("--num-validation", type=int, default=None, help="validation images (default num_images / 6)")
    p.add_argument("--num-test", type=int, default=None, help="test images (default num_images / 6)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _spine(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spacing", type=float, default=2.0, help="isotropic voxel size, mm (default 2)")
    p.add_argument("--size-xy", type=int, default=None, help="voxels in x and y (default 128 mm / spacing)")
    p.add_argument("--min-length", type=float, default=200.0, help="shortest cranio-caudal field of view, mm")
    p.add_argument("--max-length", type=float, default=400.0, help="longest cranio-caudal field of view, mm")
    p.add_argument("--write-labels", action="store_true", help="also write vertebral body label maps")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="dataset", required=True)
    p = sub.add_parser("spine_ct", help="spine CT (CSI 2014 layout)")
    _common(p, 120)
    _spine(p)
    p = sub.add_parser("ceph", help="cephalograms (ISBI 2015 layout)")
    _common(p, 60)
    p.add_argument("--pixel-size", type=float, default=0.8, help="mm per pixel (default 0.8: 242 x 300 px)")
    p = sub.add_parser("hand_xray", help="hand radiographs (Payer's Digital Hand Atlas layout)")
    _common(p, 60)
    p.add_argument("--pixel-size", type=float, default=1.0, help="mm per pixel (default 1.0: 240 x 300 px)")
    p = sub.add_parser("hand_mri", help="MR-like 3D hands")
    _common(p, 30)
    p.add_argument("--spacing", type=float, default=2.0, help="isotropic voxel size, mm (default 2)")
    p = sub.add_parser("spine_ap", help="spine AP X-rays (AASCE 2019 layout: training and test)")
    p.add_argument("--out", type=Path, required=True, help="dataset root folder (created)")
    p.add_argument("--num-images", type=int, default=20, help="total images (default 20)")
    p.add_argument("--num-test", type=int, default=None, help="test images (default num_images / 5)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--width", type=int, default=128, help="mean image width, px (default 128)")
    p.add_argument("--height", type=int, default=320, help="mean image height, px (default 320)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p = sub.add_parser("chest", help="PA chest X-rays (GU2Net layout: pngs/, labels/), generated on its own")
    _common(p, 60)
    p.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("W", "H"), help="px (default 256 256)")
    p = sub.add_parser("all", help="all four, one sub-folder each")
    _common(p, 60)
    _spine(p)
    p.add_argument("--pixel-size", type=float, default=None, help="2D mm per pixel (default: each dataset's)")
    return parser


def run(args: argparse.Namespace) -> list[Path]:
    if args.dataset == "spine_ap":
        from mlm.data.phantoms.spine_ap import write_spine_ap_dataset

        kwargs = dict(num_test=args.num_test, width=args.width, height=args.height, overwrite=args.overwrite)
        return [
            write_spine_ap_dataset(args.out, args.num_images, args.seed, show_progress=not args.no_progress, **kwargs)
        ]
    common = dict(
        num_images=args.num_images,
        seed=args.seed,
        num_validation=args.num_validation,
        num_test=args.num_test,
        overwrite=args.overwrite,
        show_progress=not args.no_progress,
    )
    todo = ["spine_ct", "ceph", "hand_xray", "hand_mri"] if args.dataset == "all" else [args.dataset]
    written = []
    for name in todo:
        out = args.out / name if args.dataset == "all" else args.out
        if name == "spine_ct":
            size_xy = args.size_xy or int(round(128.0 / args.spacing))
            path = write_spine_ct_dataset(
                out,
                spacing=args.spacing,
                size_xy=size_xy,
                write_labels=args.write_labels,
                length_mm=(args.min_length, args.max_length),
                **common,
            )
        elif name == "ceph":
            path = write_cephalogram_dataset(out, pixel_size=args.pixel_size or 0.8, **common)
        elif name == "hand_xray":
            path = write_hand_xray_dataset(out, pixel_size=args.pixel_size or 1.0, **common)
        elif name == "chest":
            from mlm.data.phantoms.chest import write_chest_phantom

            path = write_chest_phantom(out, size=tuple(args.size), **common)
        else:
            path = write_hand_mri_dataset(out, spacing=getattr(args, "spacing", 2.0), **common)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    try:
        paths = run(args)
    except (FileExistsError, FileNotFoundError, ValueError) as e:
        parser.exit(2, f"error: {e}\n")
    size = sum(f.stat().st_size for p in paths for f in p.parent.rglob("*") if f.is_file())
    for p in paths:
        print(f"wrote {p}")
    print(f"{time.perf_counter() - t0:.1f} s, {size / 1e6:.1f} MB on disk")
    return 0


if __name__ == "__main__":
    sys.exit(main())
