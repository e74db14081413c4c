"""The training configuration: one validated dataclass, read from JSON plus `key=value` overrides.

Unknown keys and bad values are refused with a `ConfigError` that lists every problem.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cifar_mtl.cifar10 import TRAIN_SIZE
from cifar_mtl.errors import UserError

VARIANTS = ("single", "multitask")
BACKBONES = ("efficientnetv2b1", "resnet9", "airbench")
# Augmentation presets and test-time views, built by the training package's augment module.
AUGMENTATIONS = ("none", "flip_translate", "flip_shift2", "randaugment", "mixup", "cutmix")
TTA_MODES = ("none", "flip", "flip_shift")
OPTIMIZERS = ("adamw", "sgd")
POOLINGS = ("avg", "max")
PRECISIONS = ("auto", "on", "off")


class ConfigError(UserError, ValueError):
    """Configuration values are unknown, of the wrong type or out of range.

    `problems` holds one (field, message) pair per problem; the field is "" for a
    problem of the whole file. The text lists every problem, one per line.
    """

    def __init__(self, problems: list[tuple[str, str]] | str, *, prefix: str = "invalid configuration"):
        self.problems = [("", problems)] if isinstance(problems, str) else list(problems)
        if isinstance(problems, str):
            text = problems
        else:
            text = f"{prefix}:\n  " + "\n  ".join(f"{k}: {m}" if k else m for k, m in self.problems)
        super().__init__(text)

    def by_field(self) -> dict[str, str]:
        """{field: its problems joined by '; '}; problems of no field are under ""."""
        out: dict[str, str] = {}
        for key, message in self.problems:
            out[key] = "; ".join(m for m in (out.get(key), message) if m)
        return out


@dataclass
class TrainConfig:
    """Everything a training run needs. Epoch counts are whole epochs; rates are per step."""

    # what to train
    variant: str = "multitask"  # "single" or "multitask" (adds the `animal` head)
    # or, for CPUs and from scratch: "resnet9" (a small residual net) or "airbench" (the
    # airbench94 net: the most accurate in an hour on 2 CPU cores, see the shipped cpu_fast config)
    backbone: str = "efficientnetv2b1"
    resnet_width: int = 64  # resnet9 only: channels of its first stage (then x2, x4, x8)
    weights: str = "none"  # "none", "imagenet" or a path to a local .weights.h5 / .h5 file
    image_size: int = 32  # side in pixels the 32x32 images are resized to (>= 32)
    dropout: float = 0.2
    pooling: str = "avg"
    # the method's label smoothing: true class 1 - eps, other classes eps / (K - 1)
    label_smoothing: float = 0.1
    animal_label_smoothing: float | None = None  # None: same eps as the class head
    animal_loss_weight: float = 1.0
    # data
    data_dir: str | None = None  # None: $CIFAR10_DIR, else the keras download
    val_split: float = 0.1  # share of the training set held out, stratified
    train_subset: int | None = None  # stratified subset of the training images, for quick runs
    # a label set applied to the training labels only ("NAME" = its latest version, "NAME@vK");
    # a run's config.json records the version it trained on (`labelsets.resolve_labels`)
    labels: str | None = None
    augment: str = "flip_translate"
    batch_size: int = 64
    # stage 1: heads on a frozen backbone (skipped when weights is "none")
    frozen_epochs: int = 0
    frozen_lr: float = 1e-3
    # stage 2: the whole backbone (or its top N blocks) fine-tuned, BatchNorm in inference mode
    finetune_epochs: int = 3
    finetune_lr: float = 1e-3
    finetune_blocks: int | None = None  # None: every block
    optimizer: str = "adamw"  # or "sgd" (Nesterov, with `momentum`); weight decay is decoupled in both
    momentum: float = 0.9
    weight_decay: float = 1e-4  # per step, times the learning rate (Keras's decoupled rule)
    warmup_epochs: float = 0.5
    # test-time augmentation: "flip" averages the image and its mirror, "flip_shift" adds
    # one-pixel shifts of both (6 views; +0.2-0.4 points for the airbench net)
    tta: str = "none"
    seed: int = 42
    mixed_precision: str = "auto"  # "auto" (bf16/fp16 on GPU only), "on", "off"
    progress_interval: float = 2.0  # seconds between progress.json updates
    name: str = "run"  # run id prefix

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def multitask(self) -> bool:
        return self.variant == "multitask"

    @property
    def animal_eps(self) -> float:
        return self.label_smoothing if self.animal_label_smoothing is None else self.animal_label_smoothing

    @property
    def train_from_scratch(self) -> bool:
        return self.weights == "none"

    @property
    def stage_epochs(self) -> list[tuple[str, int]]:
        """(stage, epochs) in training order: no frozen stage from scratch, none of 0 epochs."""
        plan = []
        if not self.train_from_scratch and self.frozen_epochs > 0:
            plan.append(("frozen", self.frozen_epochs))
        if self.finetune_epochs > 0:
            plan.append(("finetune", self.finetune_epochs))
        return plan


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
# A cross-validation run's config.json (and a cross-validation job's config) is a
# TrainConfig's fields plus this key: {"folds": K, "seed": S}; see training.crossval.
CROSSVAL_KEY = "crossval"
MIN_FOLDS, MAX_FOLDS = 2, 20


def _parse_value(key: str, text: str):
    """Turn an override string into a value of the field's type (JSON first, then raw)."""
    if text.lower() in ("null", "none") and key not in ("weights", "augment"):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _shown(value) -> str:
    """`value` for a message: a 400-digit number is cut to its first digits."""
    try:
        text = str(value)
    except ValueError:  # Python refuses to print whole numbers of over 4,300 digits
        return "a number of over 4,300 digits"
    return text if len(text) <= 24 else f"{text[:20]}... ({len(text)} digits)"


def _check_type(key: str, value, problems: list) -> object:
    spec = FIELDS[key].type
    optional = "None" in str(spec)
    if value is None:
        if not optional:
            problems.append((key, "must not be null"))
        return value
    if "float" in str(spec):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append((key, f"expected a number, got {value!r}"))
            return value
        try:
            number = float(value)
        except OverflowError:  # a whole number too large for a float
            problems.append((key, f"{_shown(value)} is too large; give a plain number"))
            return value
        if not math.isfinite(number):
            # JSON's Infinity/NaN parse as floats; no setting means anything at either.
            problems.append((key, f"{value} is not a finite number; give a plain number"))
        return number
    if "int" in str(spec):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append((key, f"expected a whole number, got {value!r}"))
        return value
    if "str" in str(spec) and not isinstance(value, str):
        problems.append((key, f"expected a string, got {value!r}"))
    return value


@dataclass(frozen=True)
class Setting:
    """How one TrainConfig field is named, explained and bounded: the one source for the
    checks below and for the Retrain form.

    `kind` is "int", "float", "rate" (a small number, shown in scientific notation),
    "choice" (one of `choices`) or "text". Numbers lie in [low, high], or [low, high)
    with `below_high`; `why` says why nothing above `high` can run.
    """

    label: str
    help: str = ""
    kind: str = "float"
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    below_high: bool = False
    why: str = ""


_EPOCHS_WHY = "longer runs take weeks; train in several runs"
SETTINGS: dict[str, Setting] = {
    "variant": Setting("Variant", "multitask adds the animal/vehicle head", "choice", VARIANTS),
    "backbone": Setting("Backbone", "efficientnetv2b1 is the method's; resnet9 and airbench train from "
                        "scratch on CPUs", "choice", BACKBONES),
    "resnet_width": Setting("ResNet-9 width", "resnet9 only: channels of its first stage.", "int", low=8, high=256,
                            why="wider nets do not train on these machines"),
    "weights": Setting("Weights", "none, imagenet, or a local weights file", "text"),
    "image_size": Setting("Image size (pixels)", "The 32x32 images are resized to this side; at least 32.", "int",
                          low=32, high=512, why="larger inputs exhaust memory without helping 32x32 images"),
    "dropout": Setting("Dropout", low=0.0, high=1.0, below_high=True),
    "pooling": Setting("Pooling", "Global pooling after the backbone", "choice", POOLINGS),
    "label_smoothing": Setting("Class head eps", "True class gets 1 - eps, every other class eps / 9. "
                               "0 turns it off.", low=0.0, high=1.0, below_high=True),
    "animal_label_smoothing": Setting("Animal head eps", "Targets 1 - eps and eps for the animal/vehicle head.",
                                      low=0.0, high=1.0, below_high=True),
    "animal_loss_weight": Setting("Animal loss weight", "Weight of the animal head's loss next to the class loss.",
                                  low=0.0, high=100.0, why="a larger weight drowns the class head's loss"),
    "data_dir": Setting("Data folder", "A cifar-10-batches-py folder or the tarball; empty: $CIFAR10_DIR or "
                        "the keras download", "text"),
    "val_split": Setting("Validation share", "Held out from the training set, stratified.",
                         low=0.0, high=0.5, below_high=True),
    "train_subset": Setting("Training images (0 = all)", "A stratified subset, for quick runs.", "int",
                            low=10, high=TRAIN_SIZE, why=f"the training set holds {TRAIN_SIZE:,} images"),
    "labels": Setting("Label set", "Corrections of the training labels built from verdicts: NAME (latest "
                      "version) or NAME@vK; empty: the labels as given", "text"),
    "augment": Setting("Augmentation", "Presets of Keras's own layers", "choice", AUGMENTATIONS),
    "batch_size": Setting("Batch size", kind="int", low=1, high=8192,
                          why="larger batches do not fit in memory at 32x32 and exceed a stage's steps"),
    "frozen_epochs": Setting("Frozen-backbone epochs", "Stage 1: heads only. Skipped when weights are 'none'.",
                             "int", low=0, high=1000, why=_EPOCHS_WHY),
    "frozen_lr": Setting("Frozen-stage learning rate", kind="rate", low=0.0),
    "finetune_epochs": Setting("Fine-tuning epochs", "Stage 2: the whole backbone (or its top blocks).", "int",
                               low=0, high=1000, why=_EPOCHS_WHY),
    "finetune_lr": Setting("Fine-tuning learning rate", kind="rate", low=0.0),
    "finetune_blocks": Setting("Fine-tuned top blocks (0 = all)", kind="int", low=1, high=64,
                               why="EfficientNetV2B1 has 23 blocks; leave it null for all of them"),
    "optimizer": Setting("Optimizer", "sgd is Nesterov SGD with `momentum`", "choice", OPTIMIZERS),
    "momentum": Setting("SGD momentum", "Nesterov momentum; used when the optimizer is sgd.",
                        low=0.0, high=1.0, below_high=True),
    "weight_decay": Setting("Weight decay", "Per step, times the learning rate (decoupled)", "rate", low=0.0,
                            high=1.0, why="each step shrinks weights by learning rate x weight decay; "
                            "above 1 it wipes them out"),
    "warmup_epochs": Setting("Warmup epochs", "Linear warmup at the start of each stage", low=0.0, high=1000.0,
                             why="the longest stage allowed"),
    "tta": Setting("Test-time augmentation", "flip averages the image and its mirror; flip_shift adds "
                   "one-pixel shifts of both", "choice", TTA_MODES),
    "seed": Setting("Seed", kind="int", low=0, high=2**32 - 1, why="NumPy and TensorFlow seeds are 32-bit"),
    "mixed_precision": Setting("Mixed precision", "auto: bf16/fp16 on a GPU only", "choice", PRECISIONS),
    "progress_interval": Setting("Progress every (s)", low=0.0, high=3600.0,
                                 why="progress.json would look stalled for over an hour"),
    "name": Setting("Run name", "Prefix of the new run's id", "text"),
}


def _check_setting(key: str, value, problems: list) -> None:
    """The choice and range of `SETTINGS[key]` (the value's type is already checked)."""
    spec = SETTINGS[key]
    if spec.kind == "choice":
        if value not in spec.choices:
            problems.append((key, f"{value!r} is not one of {', '.join(spec.choices)}"))
        return
    if spec.kind == "text" or value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if isinstance(value, float) and not math.isfinite(value):
        return  # refused by the type check
    low, high = spec.low, spec.high
    if spec.below_high and not low <= value < high:
        problems.append((key, f"{value} must be in [{low:g}, {high:g})"))
    elif low is not None and value < low:
        problems.append((key, f"{value} must be at least {low:g}" if low else f"{value} must be a non-negative number"))
    elif high is not None and not spec.below_high and value > high:
        limit = f"{int(high):,}" if spec.kind == "int" else f"{high:g}"
        problems.append((key, f"{_shown(value)} is larger than {limit} ({spec.why})"))


def _check_warmup(c: TrainConfig, problems: list) -> None:
    """Warmup restarts in every stage (train.compile_stage), so each stage must reach its peak rate."""
    if not (isinstance(c.warmup_epochs, float) and math.isfinite(c.warmup_epochs)):
        return
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (c.frozen_epochs, c.finetune_epochs)):
        return
    plan = c.stage_epochs
    if plan:
        stage, shortest = min(plan, key=lambda item: item[1])
        if c.warmup_epochs > shortest:
            problems.append(("warmup_epochs", f"{c.warmup_epochs:g} is longer than the {stage} stage "
                             f"({shortest} epochs), which would never reach its peak learning rate; "
                             f"use at most {shortest}"))


def _check_ranges(c: TrainConfig, problems: list) -> None:
    """Each field's own choice and range (`SETTINGS`), then the rules that tie fields together."""
    for key in SETTINGS:
        _check_setting(key, getattr(c, key), problems)
    _check_warmup(c, problems)
    # SGD on BatchNorm networks runs at rates far above AdamW's (airbench: 1.5).
    max_lr = 10.0 if c.optimizer == "sgd" else 1.0
    for key in ("frozen_lr", "finetune_lr"):
        v = getattr(c, key)
        if isinstance(v, float) and v < 0:
            problems.append((key, f"{v} must be a non-negative number"))
        elif isinstance(v, float) and v > max_lr:
            problems.append((key, f"{v} is larger than {max_lr:g} (the limit for optimizer {c.optimizer!r})"))
    if c.backbone in ("resnet9", "airbench") and c.weights == "imagenet":
        problems.append(("weights", f"'imagenet' exists only for efficientnetv2b1; "
                                    f"{c.backbone} trains from 'none' or a local file"))
    if isinstance(c.weights, str) and c.weights not in ("none", "imagenet"):
        if not Path(os.path.expanduser(c.weights)).is_file():
            problems.append(('weights', f"{c.weights!r} is neither 'none', 'imagenet' nor an existing file"))
    if isinstance(c.frozen_epochs, int) and isinstance(c.finetune_epochs, int):
        if c.frozen_epochs + c.finetune_epochs < 1 and not (c.weights == "none" and c.finetune_epochs >= 1):
            problems.append(("finetune_epochs", "frozen_epochs + finetune_epochs: train for at least one epoch"))
        if c.weights == "none" and c.finetune_epochs < 1:
            problems.append(('finetune_epochs', "must be at least 1 when training from scratch (weights 'none')"))
    if isinstance(c.labels, str):
        from cifar_mtl.labelsets import LabelSetError, parse_spec

        try:
            parse_spec(c.labels)
        except LabelSetError as exc:
            problems.append(("labels", str(exc)))
    if isinstance(c.name, str):
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}", c.name):
            problems.append(('name', f"{c.name!r} must be 1-40 letters, digits, '.', '_' or '-'"))


def make_config(values: dict | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Validate `values` (a dict, e.g. from JSON) plus `key=value` strings into a TrainConfig.

    Raises ConfigError listing every unknown key and every bad value.
    """
    values = dict(values or {})
    problems = []
    for item in overrides or []:
        if "=" not in item:
            problems.append(("", f"--set {item!r}: expected key=value"))
            continue
        key, text = item.split("=", 1)
        key = key.strip()
        values[key] = _parse_value(key, text.strip())
    values.pop("$comment", None)
    unknown = sorted(set(values) - set(FIELDS))
    for key in unknown:
        problems.append(("", f"{key}: unknown key (known keys: {', '.join(FIELDS)})"))
    clean = {}
    for key, value in values.items():
        if key in FIELDS:
            before = len(problems)
            checked = _check_type(key, value, problems)
            if len(problems) == before:  # a badly typed value is left out of the range checks
                clean[key] = checked
    config = TrainConfig(**clean)
    _check_ranges(config, problems)
    if problems:
        raise ConfigError(problems)
    return config


CONFIG_DIR = Path(__file__).resolve().parent / "configs"  # shipped with the package


def has_gpu() -> bool:
    """True when an NVIDIA GPU's device files exist (without importing TensorFlow, which takes seconds)."""
    return any(Path("/dev").glob("nvidia[0-9]*"))


def demo_config_file(gpu: bool | None = None) -> Path:
    """The Getting started demo's config: the method's backbone on a GPU, the fast CPU one without.

    `gpu` None asks `has_gpu()`. EfficientNetV2B1 from scratch on a CPU stays near 35% in a
    demo's few minutes; the airbench net passes 80% in the same time, so its errors are worth a look.
    """
    gpu = has_gpu() if gpu is None else gpu
    return CONFIG_DIR / ("cpu_quick.json" if gpu else "cpu_fast_demo.json")


def shipped_configs() -> list[str]:
    """Names of the configurations shipped with the package (`cpu_fast`, ...)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def config_path(name_or_path: str | Path) -> Path:
    """A config file: `name_or_path` when that file exists, else the shipped config of that name.

    `cpu_fast`, `cpu_fast.json` and `configs/cpu_fast.json` (the path from a checkout
    before the configs moved into the package) all name the shipped `cpu_fast`.
    """
    path = Path(name_or_path)
    if path.exists():
        return path
    stem = path.name[: -len(".json")] if path.name.endswith(".json") else path.name
    shipped = CONFIG_DIR / f"{stem}.json"
    return shipped if shipped.is_file() else path


def load_config_file(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a JSON config file (or a shipped config by name) and apply overrides; errors name the file."""
    asked, path = path, config_path(path)
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {asked} does not exist and is not a shipped config "
                          f"({', '.join(shipped_configs())})") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"config file {path} is not valid JSON: {exc}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a JSON object of settings")
    try:
        return make_config(values, overrides)
    except ConfigError as exc:
        raise ConfigError(exc.problems, prefix=f"{path}: invalid configuration") from None
