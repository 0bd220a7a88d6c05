"""``densemotion <command> ...``: one sub-command per pipeline stage.

Each command lives in ``densemotion.cli.<module>`` with a ``main(argv) -> int``; they are
imported only when chosen, so ``densemotion --help`` stays fast and a broken optional
dependency of one stage does not break the others.
"""

from __future__ import annotations

import importlib
import sys

# command -> (module under densemotion.cli, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "sample": ("sample", "generate one built-in synthetic clip and its ground truth"),
    "acquire": ("acquire", "download, cut and crop the clips of a published clip list (TaiChi-HD), with a manifest"),
    "use-videos": ("use_videos", "point params.yaml at a folder of videos, frame folders or zips"),
    "frames": ("frames", "decode videos into per-video frame archives"),
    "trajectories": ("trajectories", "track a dense grid over every window of a video"),
    "tracker-accuracy": ("tracker_accuracy", "score trajectories against the sample's ground truth"),
    "visualize": ("visualize", "draw trajectories of one window as PNG and GIF"),
    "train": ("train", "train the motion network"),
    "evaluate": ("evaluate", "evaluate the motion network against tracker and baselines"),
    "predict": ("predict", "predict the motion of still images (or a video frame) with a trained model"),
    "export": ("export", "write a trained model as one TorchScript or ONNX file that runs without densemotion"),
    "fetch-pips": ("fetch_pips", "unpack the published PIPs checkpoint into models/pips/"),
    "trajectories-all": ("trajectories_all", "track every video of data.videos (alone or under torchrun)"),
    "tidy": ("tidy", "set aside the outputs of videos no longer in data.videos"),
    "report": ("report", "markdown report of the workspace against a git revision (metrics, params, plots)"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items())
    return f"usage: densemotion <command> [args]\n\ncommands:\n{rows}\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"densemotion: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"densemotion.cli.{COMMANDS[name][0]}")
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
