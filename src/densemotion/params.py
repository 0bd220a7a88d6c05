"""Load and validate ``params.yaml`` once, into typed objects.

Every stage reads its section through :func:`load_params`; unknown keys and wrong types fail
at load time with the offending key named, so a typo in ``dvc exp run -S`` never runs a stage
with a silently ignored setting.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from densemotion.errors import DensemotionError
from densemotion.tracker_names import tracker_names


class ParamsError(DensemotionError):
    """``params.yaml`` is missing, unreadable or does not match the schema."""


# A video or clip name becomes a DVC stage suffix (``frames@NAME``), a file name and a word of the
# command line DVC runs through a shell, *before* any of our code can check it: so it is only ever
# letters, digits and ``._+-``, starting with a letter or digit, at most MAX_NAME characters.
# ``densemotion use-videos`` derives such names from any file name (videolist.stage_name).
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
MAX_NAME = 100


def check_stage_names(names: list[str], key: str) -> None:
    """Names that become DVC stage suffixes, file names and shell words: non-empty, unique (also
    ignoring case, for case-insensitive file systems), and only ``[A-Za-z0-9._+-]``."""
    if not names:
        raise ValueError(f"{key} is empty: list at least one name")
    if len(set(names)) != len(names):
        raise ValueError(f"{key}: names must be unique, got {names}")
    folded: dict[str, str] = {}
    for name in names:
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or len(name) > MAX_NAME:
            raise ValueError(
                f"{key}: name {name!r} must be 1-{MAX_NAME} letters, digits, '.', '_', '+' or '-', starting "
                "with a letter or digit (it becomes a DVC stage name, a file name and a word of the command "
                "DVC runs in a shell; `densemotion use-videos` makes such names from any file name)"
            )
        if name.lower() in folded:
            raise ValueError(
                f"{key}: names {folded[name.lower()]!r} and {name!r} differ only in case "
                "(their files would collide on a case-insensitive file system)"
            )
        folded[name.lower()] = name


class Section(BaseModel):
    # strict: "8" is not an int; extra=forbid: unknown keys are errors, not ignored
    # strict: "8" is not an int; extra=forbid: unknown keys are errors, not ignored; no .inf or .nan
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class SampleParams(Section):
    """The built-in synthetic clips (``densemotion sample``; layout in ``densemotion.sample``)."""

    seed: int = Field(0, ge=0)  # with a clip's index in `clips`, seeds that clip's RNG
    clips: list[str] = Field(default_factory=lambda: [f"sample{i:02d}" for i in range(6)])
    num_frames: int = Field(48, ge=2)  # frames per clip
    height: int = Field(128, ge=32)  # pixels; even (H.264 yuv420p)
    width: int = Field(224, ge=32)  # pixels; even (H.264 yuv420p)
    fps: float = Field(24.0, gt=0)  # frame rate written into the MP4
    sprites: int = Field(5, ge=0, le=32)  # moving textured sprites per clip (z-order = index)
    crf: int = Field(12, ge=0, le=51)  # x264 constant rate factor (lower = better quality)
    # directions a sprite may move in, its look telling none: 0 = off (the family sets the motion),
    # 2 = every sprite has one look and moves left or right at random, 4 = left, right, up or down
    ambiguous: int = Field(0)
    # frames per direction: match trajectories.window (8) so that each window sees one motion
    ambiguous_segment: int = Field(8, ge=2)

    @field_validator("height", "width")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 2:
            raise ValueError("must be even for H.264 (yuv420p)")
        return v

    @field_validator("ambiguous")
    @classmethod
    def _directions(cls, v: int) -> int:
        if v not in (0, 2, 4):
            raise ValueError("must be 0 (off), 2 (left or right) or 4 (left, right, up or down)")
        return v

    @field_validator("clips")
    @classmethod
    def _clip_names(cls, v: list[str]) -> list[str]:
        check_stage_names(v, "sample.clips")
        return v


# folders that carry a data set's own train / test partition (TaiChi-HD's, as `densemotion acquire`
# writes it): a video whose source sits directly in one belongs to that part (train.split_partition)
PARTITIONS = ("train", "test")


class DataParams(Section):
    """Which videos the pipeline runs on: name -> source path (video file, frame folder or zip)."""

    videos: dict[str, str]

    def partitions(self) -> dict[str, str]:
        """Name -> ``train`` or ``test`` for each video whose source's folder is named so."""
        parents = {name: Path(source).parent.name for name, source in self.videos.items()}
        return {name: parent for name, parent in parents.items() if parent in PARTITIONS}

    @field_validator("videos")
    @classmethod
    def _names_are_stage_safe(cls, v: dict[str, str]) -> dict[str, str]:
        check_stage_names(list(v), "data.videos")
        for name, source in v.items():
            if "::" in source:  # DVC could not depend on it: the frames stage lists the source as a dep
                raise ValueError(
                    f"data.videos.{name}: {source!r} is not a path DVC can depend on; give the zip's "
                    f"own path ({source.split('::')[0]}): the entry's name picks its video"
                )
        return v


class FramesParams(Section):
    """Decoding videos into per-video frame archives."""

    fps: float | None = Field(None, gt=0)  # None keeps every frame; else subsample to this rate
    max_size: int | None = Field(None, ge=16)  # longest side after resizing; never upscales
    jpeg_quality: int = Field(95, ge=1, le=100)
    workers: int = Field(2, ge=1)  # JPEG-encoding threads; output does not depend on it
    min_frames: int = Field(8, ge=1)  # shorter videos are rejected (one tracking window)
    image_fps: float | None = Field(None, gt=0)  # frame rate of frame-folder/zip sources, if known
    # shot-cut score above which a kept frame starts a new shot (densemotion.frames.cuts): 0.1-0.4
    # within a shot, 0.7-2 across a cut; None turns detection off
    cut_threshold: float | None = Field(0.6, gt=0)


def _close(name: str, choices: list[str]) -> str:
    """'' or " (did you mean 'X'?)" for the closest spelling among ``choices``."""
    import difflib

    match = difflib.get_close_matches(name, choices, n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _trackers_note(known: list[str]) -> str:
    return f"(trackers: {', '.join(known)}; each is a package in densemotion/tracking/)"


# The most pixels per frame a tracker is given (the tracking size, trajectories.resolution or the
# frames' own): 4096 x 4096, room for 4K UHD (3840 x 2160) and DCI 4K. DIS on 8000 x 8000 frames ran
# out of memory inside OpenCV, hours into a run (the trajectories stage checks the frames' size too).
MAX_TRACKING_PIXELS = 4096 * 4096


class TrajectoriesParams(Section):
    """Dense tracking over windows of frames.

    Besides the keys below, one section per tracker, named after it (``trajectories.dis``,
    ``trajectories.pips``): each tracker package declares its own params model
    (``densemotion.tracking.<name>``); ``densemotion.tracking.registry.section`` validates and returns it.
    """

    model_config = ConfigDict(extra="allow", strict=True, frozen=True, allow_inf_nan=False)

    tracker: str = "dis"
    device: Literal["cpu", "cuda", "auto"] = "auto"
    window: int = Field(8, ge=2)  # S, frames per stored trajectory (PIPs chains past its 8)
    window_stride: int | None = Field(None, ge=1)  # None -> window (non-overlapping)
    grid_stride: int = Field(4, ge=1)  # g, grid spacing in pixels of the tracking resolution
    margin: int = Field(0, ge=0)  # pixels left out at each border before the grid starts
    # (H, W) tracking resolution; None -> frames' size. Bounded: at most MAX_TRACKING_PIXELS in all
    resolution: tuple[Annotated[int, Field(ge=16, le=8192)], Annotated[int, Field(ge=16, le=8192)]] | None = None
    chunk_windows: int = Field(4, ge=1)  # windows per resumable chunk
    # windows per tracker call (alltracker, raft; the others take one); None: 8 on a GPU, 1 on the
    # CPU. The same tracks either way; bounded by the tracker's memory (docs/trackers.md: "Batches")
    batch_windows: int | None = Field(None, ge=1)

    @field_validator("resolution")
    @classmethod
    def _trackable(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and v[0] * v[1] > MAX_TRACKING_PIXELS:
            raise ValueError(
                f"{v[0]}x{v[1]} is {v[0] * v[1]} pixels, more than the {MAX_TRACKING_PIXELS} (4096x4096) "
                "a tracker takes: set a smaller (H, W)"
            )
        return v

    @model_validator(mode="after")
    def _known_trackers(self) -> TrajectoriesParams:
        known = tracker_names()
        if self.tracker not in known:
            raise ValueError(
                f"tracker: unknown tracker {self.tracker!r}{_close(self.tracker, known)} " + _trackers_note(known)
            )
        keys = [k for k in type(self).model_fields]
        for name, value in (self.model_extra or {}).items():
            if name in known:
                continue
            if isinstance(value, dict):  # a section: of a tracker whose name is misspelt
                raise ValueError(
                    f"{name}: unknown tracker section {name!r}{_close(name, known)} " + _trackers_note(known)
                )
            raise ValueError(f"{name}: unknown key{_close(name, keys)} (trajectories' keys: {', '.join(keys)})")
        return self


class VisualizeParams(Section):
    """Pictures of the trajectories (``densemotion visualize``)."""

    # videos of data.videos (first by name) drawn window by window; None: all. The contact sheet has every video
    max_videos: int | None = Field(2, ge=1)


class ModelParams(Section):
    """The motion network: a torchvision segmentation net whose last layer outputs motion."""

    name: Literal[
        "fcn_resnet50",
        "fcn_resnet101",
        "deeplabv3_resnet50",
        "deeplabv3_mobilenet_v3_large",
        "lraspp_mobilenet_v3_large",
    ] = "lraspp_mobilenet_v3_large"
    # endpoint: 2 channels, displacement to the window's last frame; trajectory: 2 x (S - 1)
    target: Literal["endpoint", "trajectory"] = "endpoint"
    # what the last layer predicts and how it is trained (densemotion.heads): point, one
    # displacement per pixel and step; laplace, a location and a scale (trained by likelihood);
    # hypotheses, `hypotheses` motion fields and their probabilities (winner-takes-all)
    head: Literal["point", "laplace", "hypotheses"] = "point"
    hypotheses: int = Field(4, ge=2, le=16)  # M, for head: hypotheses
    # none: random init; imagenet: the backbone's torchvision ImageNet weights; coco: the whole
    # torchvision segmentation model but its replaced last layers (read from models/pretrained/<it>/,
    # never downloaded)
    pretrained: Literal["none", "imagenet", "coco"] = "none"
    aux_loss: bool = False  # keep the auxiliary head (fcn_*, deeplabv3_* only) and train it too
    # the grid-resolution frame is upsampled by this factor before the net (output strides are
    # 8-16) and the prediction averaged back down to the grid
    input_scale: int = Field(4, ge=1, le=16)
    # ... but never past this many pixels on the net's input's longest side (None: no bound): the
    # scale drops to fit, per batch. 320 keeps the sample's and TaiChi's 256x256 (grids <= 80) at
    # input_scale and makes a 720p video's 180x320 grid cost what the sample's does, not 16x that
    max_input_side: int | None = Field(320, ge=16)

    @model_validator(mode="after")
    def _aux_exists(self) -> ModelParams:
        if self.aux_loss and self.name.startswith("lraspp"):
            raise ValueError(f"model.aux_loss: {self.name} has no auxiliary head (set it to false)")
        return self


class TrainParams(Section):
    """Training the motion network (``densemotion train``)."""

    seed: int = 0  # weights init, batch order, flips, dropout
    device: Literal["cpu", "cuda", "auto"] = "auto"
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(5e-3, gt=0)  # AdamW peak learning rate (from scratch; ~3e-4 to fine-tune)
    weight_decay: float = Field(1e-4, ge=0)  # AdamW's, on conv and linear weights (not norms, biases)
    head_lr_mult: float = Field(1.0, gt=0)  # the heads' learning rate: lr times this (fine-tuning: ~10)
    scheduler: Literal["onecycle", "cosine", "constant"] = "onecycle"  # stepped every batch
    # epe: mean Euclidean error of visible points (the metric itself, robust to outliers like L1);
    # l1: mean |dx| + |dy| (per-component, gradients of constant size)
    loss: Literal["epe", "l1"] = "epe"
    aux_weight: float = Field(0.5, ge=0)  # weight of the auxiliary head's loss when model.aux_loss
    grad_clip: float | None = Field(5.0, gt=0)  # max gradient norm; None disables clipping
    split_seed: int = 0  # shuffles the sorted video names before the split (kept apart from seed)
    # regex: videos whose names give the same match (its group 1 if any) stay in one split, and
    # the counts below count such groups (clips cut from one source video); null: every video alone
    split_group: str | None = None
    # true: the test set is the videos whose source sits in a test/ folder and validation is drawn
    # from those in train/ (a data set's own partition, e.g. TaiChi-HD's); test_videos is then unused
    split_partition: bool = False
    val_videos: int = Field(1, ge=0)  # held out for per-epoch validation
    test_videos: int = Field(1, ge=0)  # held out for the evaluate stage
    freeze_backbone_epochs: int = Field(0, ge=0)  # train only the heads for the first N epochs
    # random horizontal flips (x displacements negated); off for the sample, whose sprites' direction
    # is set by their texture, which a mirror does not change (a mirrored world is plausible for real video)
    hflip: bool = False
    workers: int = Field(0, ge=0)  # DataLoader worker processes; results do not depend on it
    # mixed precision, as trajectories.pips.autocast (runtime.Autocast): fp16 adds grad scaling on
    # CUDA; auto is bf16 where the GPU or CPU has it natively, else fp16 on a GPU (T4), float32 on a CPU
    autocast: Literal["none", "bf16", "fp16", "auto"] = "none"
    # torch.compile the training forward (GPU: fused kernels after a compile of a minute or so;
    # bench/gpu_check.py measures it); the same maths, rounding may differ
    compile: bool = False

    @model_validator(mode="before")
    @classmethod
    def _old_amp_key(cls, data: object) -> object:
        """``train.amp`` (before one vocabulary): true reads as ``autocast: fp16``, with a message."""
        if isinstance(data, dict) and "amp" in data:
            data = dict(data)
            amp = data.pop("amp")
            if not isinstance(amp, bool):
                raise ValueError(f"train.amp (now train.autocast) must be true or false, got {amp!r}")
            if "autocast" in data:
                raise ValueError("train.amp and train.autocast are both set: keep train.autocast (none|bf16|fp16|auto)")
            data["autocast"] = "fp16" if amp else "none"
            print(
                f"params: train.amp is now train.autocast; read amp: {str(amp).lower()} as autocast: "
                f"{data['autocast']} (rename it in params.yaml)",
                file=sys.stderr,
            )
        return data


class EvaluateParams(Section):
    """Scoring the motion network on the held-out videos (``densemotion evaluate``)."""

    device: Literal["cpu", "cuda", "auto"] = "auto"
    batch_size: int = Field(16, ge=1)
    pictures: int = Field(4, ge=0)  # side-by-side PNGs of frame, tracker and predicted motion
    picture_side: int = Field(320, ge=64, le=2048)  # px: the longest side of each panel of a picture
    hist_bins: int = Field(40, ge=2)  # bins of the end-point error histogram
    hist_max_px: float = Field(16.0, gt=0)  # its upper edge, pixels at frame scale (larger errors in the last bin)


class Params(Section):
    """The whole of ``params.yaml``, in its order: what experiments change first, since `dvc exp
    show` gives every key a column in the file's order (after the metrics), and the sample last."""

    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    trajectories: TrajectoriesParams = TrajectoriesParams()
    frames: FramesParams = FramesParams()
    visualize: VisualizeParams = VisualizeParams()
    data: DataParams
    sample: SampleParams = SampleParams()

    @model_validator(mode="after")
    def _consistent(self) -> Params:
        if self.frames.min_frames < self.trajectories.window:
            raise ValueError(
                f"frames.min_frames ({self.frames.min_frames}) must be at least "
                f"trajectories.window ({self.trajectories.window})"
            )
        return self


def describe_validation(err: ValidationError, prefix: str = "") -> str:
    """A pydantic error as one line per bad key, each named from ``prefix`` (the section)."""
    lines = []
    for e in err.errors():
        key = prefix + ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key (check the spelling; see params.yaml in the repo)")
        elif e["type"] == "value_error" and isinstance(e.get("input"), dict):
            # a section's own check: its message starts with the key it is about
            sub_key, _, message = str(e.get("ctx", {}).get("error", e["msg"])).partition(": ")
            if message and (key == sub_key or key.endswith("." + sub_key)):  # the check named its own key
                lines.append(f"  {key}: {message}")
            else:
                lines.append(f"  {key}.{sub_key}: {message}" if message else f"  {key}: {sub_key}")
        else:
            got = e.get("input")
            lines.append(f"  {key}: {e['msg']} (got {got!r})")
    return "\n".join(lines)


def parse_params(raw: object, source: str = "params.yaml") -> Params:
    """Validate an already-parsed params mapping."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    # YAML gives lists where a tuple is declared; pydantic's strict mode would reject them
    try:
        return Params.model_validate(_lists_to_tuples_for_tuple_fields(raw))
    except ValidationError as err:
        raise ParamsError(f"{source} is invalid:\n{describe_validation(err)}") from None


def _lists_to_tuples_for_tuple_fields(raw: dict) -> dict:
    traj = raw.get("trajectories")
    if isinstance(traj, dict) and isinstance(traj.get("resolution"), list):
        raw = {**raw, "trajectories": {**traj, "resolution": tuple(traj["resolution"])}}
    return raw


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key repeated in one mapping (DVC refuses such a file too;
    last-wins would silently reset a whole section to its defaults) and a key that is not a plain
    value (``? [a, b]``)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, f"a key must be a plain value, not a {type(key).__name__}", key_node.start_mark
                ) from None
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {seen[key] + 1})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def read_yaml(text: str) -> object:
    """Parse YAML safely (no tags run), refusing duplicate and non-plain keys; yaml.YAMLError on
    bad input, nesting too deep for a parser included."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except RecursionError:
        raise yaml.YAMLError("nested too deeply (params are a few levels of sections and keys)") from None


def read_text(path: str | Path) -> str:
    """A text file's content; ParamsError naming the file where it is not UTF-8 (OSError as is)."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ParamsError(
            f"{path}: not UTF-8 text (byte {data[err.start]:#04x} on line {line}); save it as UTF-8"
        ) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``params.yaml``; raise :class:`ParamsError` naming the bad key."""
    path = Path(path)
    try:
        text = read_text(path)
    except OSError as err:
        raise ParamsError(f"cannot read {path}: {err.strerror}") from None
    except ValueError as err:
        raise ParamsError(str(err)) from None
    try:
        raw = read_yaml(text)
    except yaml.YAMLError as err:
        raise ParamsError(f"{path} is not valid YAML: {yaml_problem(err)}") from None
    return parse_params(raw, str(path))


def yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML error in one line: what is wrong and where (``line L, column C``)."""
    if isinstance(err, yaml.MarkedYAMLError):
        mark = err.problem_mark or err.context_mark
        what = "; ".join(str(x) for x in (err.context, err.problem) if x) or "malformed"
        return f"{what} (line {mark.line + 1}, column {mark.column + 1})" if mark else what
    return " ".join(str(err).split())
