"""Command line: ``python -m foscat_core demo [--backend ...] [--quick]`` (also ``foscat-core demo``)."""

import argparse
import sys

from foscat_core.backends.registry import AUTOGRAD_NAMES, installed_autograd_backends

MAX_DEMO_NSIDE = 1024  # a 30 degree disc there is ~850k cells: minutes per epoch and GBs; beyond is a mistake


def _parser():
    parser = argparse.ArgumentParser(prog="foscat-core", description="foscat_core command line")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train a regional U-Net and run a hybrid synthesis; writes figures")
    demo.add_argument("--backend", choices=list(AUTOGRAD_NAMES), default=None,
                      help=f"framework to run on (default: the first installed of {', '.join(AUTOGRAD_NAMES)})")
    demo.add_argument("--nside", type=int, default=None,
                      help=f"resolution, a power of two from 8 to {MAX_DEMO_NSIDE} (default 64; 16 with --quick)")
    demo.add_argument("--epochs", type=int, default=None, help="training epochs (default 20; 8 with --quick)")
    demo.add_argument("--out", default="foscat_demo",
                      help="folder for the figures and results.json (created; checked writable before the run)")
    demo.add_argument("--quick", action="store_true", help="a CI-sized run (well under a minute)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.add_argument("--no-figures", action="store_true", help="skip the PNGs (no matplotlib needed)")
    return parser


def _default_backend():
    installed = installed_autograd_backends()
    if installed:
        return installed[0]
    sys.exit(f"foscat-core demo needs one of {', '.join(AUTOGRAD_NAMES)}: pip install 'foscat_core[torch]'")


def main(argv=None):
    args = _parser().parse_args(argv)
    from foscat_core._validation import check_nside
    from foscat_core.demo import DemoConfig, run_demo
    from foscat_core.demo.report import prepare_out

    overrides = {"backend": args.backend or _default_backend(), "verbose": not args.quiet}
    if args.nside is not None:
        overrides["nside"] = args.nside
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    cfg = DemoConfig.quick(**overrides) if args.quick else DemoConfig(**overrides)
    try:
        check_nside(cfg.nside, "--nside")
        if cfg.nside < 8:
            raise ValueError(f"--nside must be at least 8 for the demo's U-Net and scattering scales, got {cfg.nside}")
        if cfg.nside > MAX_DEMO_NSIDE:
            raise ValueError(f"--nside must be at most {MAX_DEMO_NSIDE} for the demo (its memory and time grow as "
                             f"nside**2), got {cfg.nside}")
        if cfg.epochs < 1:
            raise ValueError(f"--epochs must be a positive integer, got {cfg.epochs}")
        prepare_out(args.out, "--out")  # before the run: a bad folder must not cost the results
    except (TypeError, ValueError) as err:
        _parser().error(str(err))
    run_demo(cfg, out=args.out, make_figures=not args.no_figures)


if __name__ == "__main__":
    main()
