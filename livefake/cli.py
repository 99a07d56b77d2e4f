"""Command line: ``livefake render``, ``livefake demo``; problems are one line, never a traceback."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from livefake import __version__
from livefake.errors import LivefakeError


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 1280x720, got '{text}'") from None
    if w < 16 or h < 16:
        raise argparse.ArgumentTypeError(f"size must be at least 16x16, got '{text}'")
    return w, h


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got '{text}'")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (0 < value <= 3600):  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"expected seconds between 0 and 3600, got '{text}'")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="livefake",
        description="Reenact the face in one photo with the motion of a driving video.",
    )
    parser.add_argument("--version", action="version", version=f"livefake {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--crop-size", type=int, choices=(256, 512), default=256,
                       help="generator resolution of the face crop (default 256)")
        p.add_argument("--size", type=_size, metavar="WxH",
                       help="output frame size (default: the source photo's own)")
        p.add_argument("--max-frames", type=_positive_int, metavar="N", help="stop after N frames")
        p.add_argument("--full-res", action="store_true",
                       help="resample the face from the full-resolution photo through the warp instead of pasting "
                            "the crop back: sharper when the face is larger than the crop, slower on the CPU")
        p.add_argument("--quiet", action="store_true", help="no progress bar")

    render = sub.add_parser("render", help="reenact a photo with the motion of a driving video into an MP4")
    render.add_argument("--source", required=True, type=Path, help="photo with the face to animate")
    render.add_argument("--driving", required=True, type=Path, help="video whose face motion drives the photo")
    render.add_argument("--output", required=True, type=Path, help="H.264 MP4 to write (keeps the clip's audio)")
    common(render)

    demo = sub.add_parser("demo", help="animate the built-in face with built-in motion (no files needed)")
    demo.add_argument("--output", type=Path, default=Path("demo.mp4"), help="MP4 to write (default demo.mp4)")
    demo.add_argument("--source", type=Path, help="use this photo instead of the built-in face")
    demo.add_argument("--seconds", type=_seconds, default=8.0, help="length of the demo (default 8)")
    common(demo)
    return parser


def run(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the exit code. Raises :class:`LivefakeError`."""
    from livefake.reenactor import ReenactConfig
    from livefake.render import RenderOptions, render_demo, render_video

    args = _parser().parse_args(argv)
    if args.command is None:
        raise LivefakeError(
            "the live webcam app is not built yet; use 'livefake render --source PHOTO --driving CLIP "
            "--output OUT.mp4' or 'livefake demo'"
        )
    options = RenderOptions(crop_size=args.crop_size, output_size=args.size, max_frames=args.max_frames,
                            progress=not args.quiet, reenact=ReenactConfig(full_resolution=args.full_res))
    if args.command == "render":
        report = render_video(args.source, args.driving, args.output, options)
    else:
        report = render_demo(args.output, options, source=args.source, seconds=args.seconds)
    lost = report.frames - report.faces_found
    note = f"; no face in {lost} driving frames (held, then eased to neutral)" if lost else ""
    print(f"wrote {report.output} ({report.frames} frames, {report.fps:.1f} fps{note})")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Console entry point: one clear line and a non-zero exit for anything the user can fix."""
    logging.basicConfig(level=logging.WARNING, format="livefake: %(message)s")
    os.environ.setdefault("GLOG_minloglevel", "2")
    try:
        return run(argv)
    except LivefakeError as err:
        print(f"livefake: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("livefake: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a bug, not the user's doing: still one line, with what to report
        print(f"livefake: internal error: {type(err).__name__}: {err}; please report it with the command you ran",
              file=sys.stderr)
        return 2
