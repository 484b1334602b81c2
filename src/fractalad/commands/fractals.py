"""`fractalad fractals`: sample IFS systems, preview them, export a fixed image dataset."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from fractalad.commands.arguments import int_range, positive_int, seed_int

if TYPE_CHECKING:
    from fractalad.fractals.render import RenderConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `fractals` and its `sample`, `preview` and `export` subcommands."""
    parser = subparsers.add_parser(
        "fractals", help="sample, preview and export fractal datasets", description=__doc__
    )
    commands = parser.add_subparsers(dest="fractals_command", metavar="ACTION", required=True)
    _add_sample(commands)
    _add_preview(commands)
    _add_export(commands)


def _add_n_range(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--n-range",
        type=positive_int,
        nargs=2,
        metavar=("MIN", "MAX"),
        help="number of maps per system, inclusive (overrides --preset)",
    )
    parser.add_argument(
        "--preset",
        default=None,
        help="map-count preset: paper (2..8, the paper's text; sigma default) or code (2..4, the "
        "paper's code); FractalDB uses 2..7 unless --n-range is given",
    )


def _add_render(parser: argparse.ArgumentParser, size: int | None) -> None:
    parser.add_argument(
        "--render", default="paper", help="render preset: paper, af or fractaldb (default paper)"
    )
    parser.add_argument(
        "--size", type=int_range(8, 8192), default=size, help="image size in pixels (default: the preset's)"
    )
    parser.add_argument(
        "--n-points", type=positive_int, default=None, help="chaos-game points per image (default: preset)"
    )


def _add_sample(commands: argparse._SubParsersAction) -> None:
    sample = commands.add_parser(
        "sample",
        help="sample IFS systems into a .npz systems file",
        description="Draw systems with the sigma-factor sampler (Anderson & Farrell) or search FractalDB "
        "categories (Kataoka et al.: fill rate >= 20 % at 512x512), and save them.",
    )
    sample.add_argument(
        "--sampler", choices=("sigma", "fractaldb"), default="sigma", help="sampler (default sigma)"
    )
    sample.add_argument(
        "--count", type=positive_int, required=True, help="number of systems / FractalDB categories"
    )
    _add_n_range(sample)
    sample.add_argument("--seed", type=seed_int, default=0, help="random seed (default 0)")
    sample.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="processes for the FractalDB search (default: all cores)",
    )
    sample.add_argument(
        "--expand-weights",
        action="store_true",
        help="FractalDB: store each category's 25 weight variants (25 x count systems)",
    )
    sample.add_argument("--out", required=True, help="output .npz systems file")
    sample.set_defaults(handler=_sample)


def _add_preview(commands: argparse._SubParsersAction) -> None:
    preview = commands.add_parser("preview", help="render a grid PNG of fractals (like the paper's Fig. 8)")
    preview.add_argument(
        "--systems", default=None, help="systems file (default: sample fresh sigma-factor systems)"
    )
    preview.add_argument(
        "--count", type=positive_int, default=32, help="number of fractals in the grid (default 32)"
    )
    _add_n_range(preview)
    preview.add_argument("--columns", type=positive_int, default=8, help="grid columns (default 8)")
    _add_render(preview, 128)
    preview.add_argument("--seed", type=seed_int, default=0, help="random seed (default 0)")
    preview.add_argument("--out", required=True, help="output PNG path")
    preview.set_defaults(handler=_preview)


def _add_export(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser(
        "export",
        help="render a fixed dataset into ImageFolder layout (resumable)",
        description="Render classes x samples-per-class images (class L owns systems L*S/C..(L+1)*S/C-1) as "
        "OUT/class_00000/000000.png with a manifest.json; existing complete files are skipped.",
    )
    export.add_argument("--systems", required=True, help="systems file from `fractalad fractals sample`")
    export.add_argument("--out", required=True, help="output folder")
    export.add_argument(
        "--classes", type=positive_int, default=None, help="number of classes (default: one per system)"
    )
    export.add_argument(
        "--samples-per-class", type=positive_int, default=10, help="images per class (default 10)"
    )
    _add_render(export, None)
    export.add_argument("--seed", type=seed_int, default=0, help="random seed (default 0)")
    export.add_argument("--workers", type=positive_int, default=1, help="writer processes (default 1)")
    export.set_defaults(handler=_export)


def _n_range(args: argparse.Namespace, default: tuple[int, int]) -> tuple[int, int]:
    from fractalad.errors import InputError
    from fractalad.fractals.sampling import SIGMA_PRESETS, check_n_range

    if args.n_range is not None:
        n_min, n_max = args.n_range
    elif args.preset is not None:
        if args.preset not in SIGMA_PRESETS:
            raise InputError(
                f"unknown map-count preset {args.preset!r}: choose one of {', '.join(SIGMA_PRESETS)}"
            )
        n_min, n_max = SIGMA_PRESETS[args.preset]
    else:
        n_min, n_max = default
    check_n_range(n_min, n_max)
    return n_min, n_max


def _render_config(args: argparse.Namespace) -> RenderConfig:
    from fractalad.fractals.render import get_render_preset

    config = get_render_preset(args.render)
    changes = {}
    if args.size is not None:
        changes["size"] = args.size
    if args.n_points is not None:
        changes["n_points"] = args.n_points
    return config.replace(**changes) if changes else config


def _sample(args: argparse.Namespace) -> int:
    from fractalad.files import check_output_file
    from fractalad.fractals import sampling
    from fractalad.fractals.systems import save_systems

    check_output_file(args.out)
    if args.sampler == "sigma":
        n_min, n_max = _n_range(args, sampling.SIGMA_PRESETS["paper"])
        systems = sampling.sample_systems(args.count, args.seed, n_min, n_max)
    else:
        n_min, n_max = _n_range(args, sampling.FRACTALDB_N_RANGE)
        systems = sampling.sample_fractaldb(args.count, args.seed, args.workers, n_min, n_max)
        if args.expand_weights:
            systems = sampling.expand_fractaldb(systems)
    parameters = {"count": args.count, "n_min": n_min, "n_max": n_max}
    if args.sampler == "fractaldb":
        parameters.update(sampling.FRACTALDB_FILL, expand_weights=bool(args.expand_weights))
    metadata = {
        "sampler": args.sampler,
        "parameters": parameters,
        "seed": args.seed,
        "n_min": n_min,
        "n_max": n_max,
    }
    save_systems(args.out, systems, metadata)
    print(f"wrote {len(systems)} systems to {args.out}")
    return 0


def _preview(args: argparse.Namespace) -> int:
    from fractalad.files import check_output_file
    from fractalad.fractals import sampling
    from fractalad.fractals.preview import save_preview
    from fractalad.fractals.systems import load_systems

    check_output_file(args.out)
    if args.systems is not None:
        systems = load_systems(args.systems)[0][: args.count]
    else:
        systems = sampling.sample_systems(
            args.count, args.seed, *_n_range(args, sampling.SIGMA_PRESETS["paper"])
        )
    out = save_preview(args.out, systems, _render_config(args), args.seed, args.columns)
    print(f"wrote {out}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from fractalad.files import check_output_folder
    from fractalad.fractals.export import export_imagefolder
    from fractalad.fractals.systems import load_systems

    check_output_folder(args.out)
    systems, _ = load_systems(args.systems)
    classes = args.classes if args.classes is not None else len(systems)
    out = export_imagefolder(
        systems, args.out, classes, args.samples_per_class, _render_config(args), args.seed, args.workers
    )
    print(f"wrote {classes * args.samples_per_class} images to {out}")
    return 0
