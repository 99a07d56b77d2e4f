"""Command line: ``livefake render``, ``livefake demo``; problems are one line, never a traceback."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from livefake import __version__
from livefake.errors import LivefakeError

if TYPE_CHECKING:  # imported lazily at run time: --help and render start without them
    from livefake.audio import AudioPassthrough
    from livefake.live import LivePipeline
    from livefake.provenance import ProvenanceConfig


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


def _camera(text: str) -> int | str:
    return int(text) if text.isdigit() else text


LIVE_HELP = """live app (no COMMAND): the webcam drives the photo and the result is published as a virtual camera.
keys in the --preview window: n or space re-sets the neutral pose (look straight, mouth closed);
1-9 picks among several --source photos; p passes the webcam through; m mirrors; q or Esc quits.
Ctrl-C also quits; a summary of fps, latency and drops is printed on exit.

provenance: every frame livefake outputs (live, render, demo) carries an invisible watermark naming
livefake and its version ('livefake detect FILE' finds it) and a visible 'AI' badge. --no-badge hides
the badge: you then carry the duty to tell the people who see the video that it is synthetic."""


def _user_id(text: str) -> int:
    if not text.isdigit() or int(text) >= 1 << 16:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to 65535, got '{text}'")
    return int(text)


def _add_provenance_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument("--no-badge", action="store_true",
                        help="hide the visible 'AI' badge (the invisible watermark stays); you then carry the "
                             "duty to tell viewers that the video is synthetic")
    parser.add_argument("--badge-text", default="AI", metavar="TEXT", help="text of the badge (default AI)")
    parser.add_argument("--mark-id", type=_user_id, default=0, metavar="N",
                        help="a number 0-65535 of your choice carried in the invisible watermark (default 0: none)")


def _provenance(args: argparse.Namespace) -> ProvenanceConfig:
    from livefake.provenance import ProvenanceConfig

    try:
        return ProvenanceConfig(badge=not args.no_badge, badge_text=args.badge_text, user_id=args.mark_id)
    except ValueError as err:
        raise LivefakeError(f"--badge-text: {err}") from None


def _add_shading_option(group: argparse._ActionsContainer) -> None:
    group.add_argument("--no-shading", action="store_true",
                       help="keep the photo's own light instead of carrying the driver's changes of light onto it")


def _add_full_res_option(group: argparse._ActionsContainer, dest: str) -> None:
    group.add_argument("--full-res", dest=dest, nargs="?", const="always", default="auto",
                       choices=("auto", "always", "never"),
                       help="resample the face from the full-resolution photo through the warp instead of pasting "
                            "the crop back: sharper, slower on the CPU (default auto: where the crop shrinks the "
                            "face more than 4 times, a close-up; --full-res alone: always)")


def _full_resolution_beyond(choice: str) -> float:
    """``--full-res`` as :attr:`ReenactConfig.full_resolution_beyond`."""
    from livefake.reenactor import ReenactConfig

    return {"auto": ReenactConfig.full_resolution_beyond, "always": 0.0, "never": float("inf")}[choice]


def _add_live_options(parser: argparse.ArgumentParser) -> None:
    live = parser.add_argument_group("live app (no COMMAND)")
    live.add_argument("--source", dest="live_sources", type=Path, action="append", metavar="PHOTO",
                      help="photo to animate; repeat for up to 9 (keys 1-9 switch); default: the built-in face")
    live.add_argument("--camera", type=_camera, default=0, metavar="INDEX|PATH",
                      help="webcam index or device path (default 0)")
    live.add_argument("--capture-size", type=_size, default=(640, 480), metavar="WxH",
                      help="resolution asked of the webcam (default 640x480)")
    live.add_argument("--driving", dest="live_driving", type=Path, metavar="FILE",
                      help="play this video as the webcam, at its own frame rate, looping")
    _add_shading_option(live)
    _add_full_res_option(live, "live_full_res")
    live.add_argument("--unpaced", action="store_true",
                      help="with --driving: as fast as the pipeline takes frames (throughput measurements)")
    live.add_argument("--size", dest="live_size", type=_size, default=(1280, 720), metavar="WxH",
                      help="output size (default 1280x720)")
    live.add_argument("--crop-size", dest="live_crop", type=int, choices=(256, 512), default=256,
                      help="generator resolution (default 256)")
    live.add_argument("--fps", type=float, default=30.0, help="virtual camera frame rate (default 30)")
    live.add_argument("--preview", action="store_true", help="show a window with fps, latency and drops")
    live.add_argument("--record", type=Path, metavar="OUT.mp4", help="also record the output to an MP4")
    live.add_argument("--no-virtual-camera", action="store_true", help="do not publish a virtual camera")
    live.add_argument("--mirror", action="store_true", help="mirror the webcam (head turns mirrored)")
    live.add_argument("--backend", default="auto", choices=("auto", "tensorrt", "cuda", "cpu", "onnxruntime"),
                      help="generator backend (default auto: the fastest that starts here)")
    live.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16"),
                      help="generator precision on a GPU (default auto: fp16 for TensorRT, fp32 for torch CUDA)")
    live.add_argument("--audio", action="store_true",
                      help="pass the microphone (with --driving: the clip's own audio) to an audio output, "
                           "delayed by the measured video latency so lips and voice stay in sync")
    live.add_argument("--audio-in", metavar="NAME|INDEX", help="microphone (default: the system's)")
    live.add_argument("--audio-out", metavar="NAME|INDEX",
                      help="output the call app takes as its microphone, e.g. a PulseAudio null sink, VB-CABLE "
                           "or BlackHole (default: the system's)")
    live.add_argument("--audio-delay-ms", type=float, metavar="MS",
                      help="a fixed audio delay instead of the measured video latency")
    live.add_argument("--stats", type=Path, metavar="FILE.json", help="write telemetry as JSON on exit")
    live.add_argument("--seconds", dest="live_seconds", type=_seconds, metavar="N", help="stop after N seconds")
    _add_provenance_options(live)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="livefake",
        description="Reenact the face in one photo with the motion of a webcam (live, as a virtual camera) "
                    "or of a driving video (render).",
        epilog=LIVE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"livefake {__version__}")
    _add_live_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--crop-size", type=int, choices=(256, 512), default=256,
                       help="generator resolution of the face crop (default 256)")
        p.add_argument("--size", type=_size, metavar="WxH",
                       help="output frame size (default: the source photo's own)")
        p.add_argument("--max-frames", type=_positive_int, metavar="N", help="stop after N frames")
        _add_full_res_option(p, "full_res")
        _add_shading_option(p)
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.add_argument("--backend", default="auto", choices=("auto", "tensorrt", "cuda", "cpu", "onnxruntime"),
                       help="generator backend (default auto: the fastest that starts here)")
        _add_provenance_options(p)

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

    sub.add_parser("devices", help="list webcams, audio inputs and audio outputs (for --camera, --audio-in, "
                                   "--audio-out)")
    sub.add_parser("doctor", help="report what this machine has (GPU, TensorRT, webcam, virtual camera, audio) "
                                  "and what livefake will use")
    detect = sub.add_parser(
        "detect", help="check an image or video for livefake's invisible watermark (exit status 0: found, "
                       "1: not found, 2: the file could not be read)",
        description="Check an image or video for livefake's invisible watermark. Prints whether it is there, "
                    "with a p-value: the chance that a file without the mark scores as high (called found at "
                    "1e-4 or less), for the whole file, each 1-second window and each frame, and the payload "
                    "(livefake version, --mark-id) when it reads intact. Exit status 0: found; 1: not found; "
                    "2: the file could not be read. The mark survives H.264 at video-call quality, 360p, "
                    "JPEG, a 10 % crop, mirroring, brightness and contrast; not a frame shrunk into a larger "
                    "picture, and not someone who sets out to remove or forge it (the key is public). Not "
                    "found does not show that a video is real.")
    detect.add_argument("file", type=Path, help="image or video to check")
    detect.add_argument("--json", type=Path, metavar="OUT.json", help="also write every window and frame as JSON")
    detect.add_argument("--max-frames", type=_positive_int, metavar="N", help="read at most N frames")
    build = sub.add_parser("build-engine", help="compile the TensorRT engine ahead of the first live run")
    build.add_argument("--crop-size", type=int, choices=(256, 512), default=256, help="generator resolution")
    build.add_argument("--precision", choices=("fp16", "fp32"), default="fp16", help="engine precision")
    return parser


def run(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the exit code. Raises :class:`LivefakeError`."""
    from livefake.reenactor import ReenactConfig
    from livefake.render import RenderOptions, render_demo, render_video
    from livefake.shading import ShadingConfig

    args = _parser().parse_args(argv)
    if args.command is None:
        return run_live(args)
    if args.command == "devices":
        from livefake.audio import list_devices
        from livefake.capture import list_cameras

        print("webcams (--camera):")
        print(list_cameras())
        print("audio (--audio-in, --audio-out):")
        try:
            print(list_devices())
        except LivefakeError as err:
            print(f"  {err}")
        return 0
    if args.command == "doctor":
        from livefake.doctor import print_report

        return print_report()
    if args.command == "detect":
        from livefake.detect import detect_file, write_json

        try:
            found = detect_file(args.file, max_frames=args.max_frames)
        except LivefakeError as err:
            print(f"livefake: error: {err}", file=sys.stderr)
            return 2
        print(found.summary())
        if args.json:
            write_json(found, args.json)
        return 0 if found.marked else 1
    if args.command == "build-engine":
        from livefake.backends import default_cache_dir
        from livefake.doctor import build_engine

        print(f"wrote {build_engine(args.crop_size, args.precision, default_cache_dir())}")
        return 0
    from livefake.backends import BackendConfig

    options = RenderOptions(crop_size=args.crop_size, output_size=args.size, max_frames=args.max_frames,
                            progress=not args.quiet,
                            reenact=ReenactConfig(full_resolution_beyond=_full_resolution_beyond(args.full_res),
                                                  backend=BackendConfig(args.backend),
                                                  shading=ShadingConfig(enabled=not args.no_shading),
                                                  provenance=_provenance(args)))
    if args.command == "render":
        report = render_video(args.source, args.driving, args.output, options)
    else:
        report = render_demo(args.output, options, source=args.source, seconds=args.seconds)
    lost = report.frames - report.faces_found
    note = f"; no face in {lost} driving frames (held, then eased to neutral)" if lost else ""
    print(f"wrote {report.output} ({report.frames} frames, {report.fps:.1f} fps{note})")
    return 0


def run_live(args: argparse.Namespace) -> int:
    """The live app from parsed arguments: sources, sinks, pipeline, preview; a summary on exit."""
    from livefake.backends import BackendConfig
    from livefake.capture import CameraSource, ClipSource, FrameSource
    from livefake.frame_queue import LatestQueue
    from livefake.live import LiveConfig, LivePipeline, check_display, prepare_sources, run_preview
    from livefake.reenactor import ReenactConfig
    from livefake.shading import ShadingConfig
    from livefake.sinks import RecordSink, Sink, VirtualCameraSink

    photos = args.live_sources or [None]
    if len(photos) > 9:
        raise LivefakeError("at most 9 --source photos (keys 1-9 pick them)")
    width, height = (v - v % 2 for v in args.live_size)  # even sides, as video encoders need
    if not 1 <= args.fps <= 120:
        raise LivefakeError(f"--fps must be between 1 and 120, got {args.fps}")
    if args.preview:
        check_display()
    sinks: list[Sink] = []
    frame_source: FrameSource | None = None
    try:
        if args.live_driving:
            frame_source = ClipSource(args.live_driving, paced=not args.unpaced)
        else:
            cw, ch = args.capture_size
            frame_source = CameraSource(args.camera, cw, ch, args.fps)
        if args.record:
            sinks.append(RecordSink(args.record, width, height, args.fps))
        if not args.no_virtual_camera:
            try:
                sinks.append(VirtualCameraSink(width, height, args.fps))
            except LivefakeError as err:
                if not (args.preview or args.record or args.stats):
                    raise LivefakeError(f"{err}; or run with --preview or --record to see the output") from None
                logging.getLogger("livefake").warning("%s; going on without it", err)
        sources = prepare_sources(photos, args.live_crop, (width, height))
    except BaseException:
        for sink in sinks:
            sink.close()
        if frame_source is not None:
            frame_source.close()
        raise
    config = LiveConfig(fps=args.fps, mirror=args.mirror,
                        reenact=ReenactConfig(backend=BackendConfig(args.backend, args.precision),
                                              full_resolution_beyond=_full_resolution_beyond(args.live_full_res),
                                              shading=ShadingConfig(enabled=not args.no_shading),
                                              provenance=_provenance(args)))
    preview: LatestQueue | None = LatestQueue(1, "preview") if args.preview else None
    pipeline = LivePipeline(sources, frame_source, sinks, config, preview=preview)
    drawn = "; ".join(dict.fromkeys(r.describe() for r in pipeline.reenactors))
    print(f"livefake: live, {len(sources)} source photo(s), {width}x{height} at {args.fps:g} fps, face from "
          f"{drawn}; Ctrl-C to stop", file=sys.stderr)
    audio = _start_audio(args, pipeline) if args.audio else None
    # A service manager's stop (SIGTERM) ends the run as Ctrl-C does: threads stopped, camera released,
    # the recording closed properly.
    import signal

    from livefake.live import Control

    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, lambda *_: pipeline.control(Control.QUIT))
    try:
        with pipeline:
            if preview is not None:
                run_preview(pipeline, preview, args.live_seconds)
            else:
                pipeline.wait(args.live_seconds)
    except KeyboardInterrupt:
        pass
    finally:
        if audio is not None:
            audio.close()
            pipeline.telemetry.audio_xruns = audio.xruns
        if args.stats:
            pipeline.telemetry.write_json(args.stats)
        print(f"livefake: {pipeline.telemetry.summary_line()}", file=sys.stderr)
    return 0


def _start_audio(args: argparse.Namespace, pipeline: LivePipeline) -> AudioPassthrough | None:
    """The audio passthrough for the live app, its delay following the video latency; None (with one line
    saying why) when it cannot start: the video goes on without it."""
    from livefake.audio import AudioPassthrough, find_device, follow_latency, read_clip_audio

    log = logging.getLogger("livefake")
    fixed = None if args.audio_delay_ms is None else max(args.audio_delay_ms, 0.0) / 1000
    # Until the latency is measured, start at the one the playout delay holds the video to.
    start = fixed if fixed is not None else pipeline.expected_latency_s
    try:
        output = find_device(args.audio_out, "output")
        if args.live_driving:  # the clip's own audio stands in for the microphone
            samples, rate = read_clip_audio(args.live_driving)
            audio = AudioPassthrough(output_device=output, sample_rate=rate, channels=samples.shape[1],
                                     source=samples, delay_s=start)
        else:
            audio = AudioPassthrough(input_device=find_device(args.audio_in, "input"), output_device=output,
                                     delay_s=start)
        audio.start()
    except LivefakeError as err:
        log.warning("audio: %s; going on without it", err)
        return None

    audio.watch(lambda: pipeline.running)
    if fixed is None:  # the measured capture-to-output latency, twice a second
        follow_latency(pipeline.latency_s, audio.line, lambda: pipeline.running)
    return audio


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
