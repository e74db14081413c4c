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

from cifar_mtl.augment import PRESETS, TTA_MODES
from cifar_mtl.data import TRAIN_SIZE

VARIANTS = ("single", "multitask")
BACKBONES = ("efficientnetv2b1", "resnet9", "airbench")
AUGMENTATIONS = PRESETS
OPTIMIZERS = ("adamw", "sgd")
POOLINGS = ("avg", "max")


class ConfigError(ValueError):
    """A configuration value is unknown or out of range. The message lists every problem."""


@dataclass
class TrainConfig:
    """Everything a training run needs. Epoch counts are whole epochs; rates are per step."""

    # what to train
    variant: str = "multitask"  # "single" or "multitask" (adds the `animal` head)
    # or, for CPUs and from scratch: "resnet9" (a small residual net) or "airbench" (the
    # airbench94 net: the most accurate in an hour on 2 CPU cores, see configs/cpu_fast.json)
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
            problems.append(f"{key}: must not be null")
        return value
    if "float" in str(spec):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{key}: expected a number, got {value!r}")
            return value
        try:
            number = float(value)
        except OverflowError:  # a whole number too large for a float
            problems.append(f"{key}: {_shown(value)} is too large; give a plain number")
            return value
        if not math.isfinite(number):
            # JSON's Infinity/NaN parse as floats; no setting means anything at either.
            problems.append(f"{key}: {value} is not a finite number; give a plain number")
        return number
    if "int" in str(spec):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{key}: expected a whole number, got {value!r}")
        return value
    if "str" in str(spec) and not isinstance(value, str):
        problems.append(f"{key}: expected a string, got {value!r}")
    return value


# whole-number field -> (lowest, highest, why the highest): values beyond cannot run.
WHOLE_BOUNDS = {
    "image_size": (32, 512, "larger inputs exhaust memory without helping 32x32 images"),
    "batch_size": (1, 8192, "larger batches do not fit in memory at 32x32 and exceed a stage's steps"),
    "frozen_epochs": (0, 1000, "longer runs take weeks; train in several runs"),
    "finetune_epochs": (0, 1000, "longer runs take weeks; train in several runs"),
    "seed": (0, 2**32 - 1, "NumPy and TensorFlow seeds are 32-bit"),
    "train_subset": (10, TRAIN_SIZE, f"the training set holds {TRAIN_SIZE:,} images"),
    "finetune_blocks": (1, 64, "EfficientNetV2B1 has 23 blocks; leave it null for all of them"),
}
# number field -> (highest, why); each must also be finite and at least 0. The learning
# rates' limits depend on the optimizer and are checked on their own.
NUMBER_BOUNDS = {
    "animal_loss_weight": (100.0, "a larger weight drowns the class head's loss"),
    "weight_decay": (1.0, "each step shrinks weights by learning rate x weight decay; above 1 it wipes them out"),
    "warmup_epochs": (1000.0, "the longest stage allowed"),
    "progress_interval": (3600.0, "progress.json would look stalled for over an hour"),
}


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
            problems.append(
                f"warmup_epochs: {c.warmup_epochs:g} is longer than the {stage} stage ({shortest} epochs), "
                f"which would never reach its peak learning rate; use at most {shortest}"
            )


def _check_ranges(c: TrainConfig, problems: list) -> None:
    def choice(key, options):
        if getattr(c, key) not in options:
            problems.append(f"{key}: {getattr(c, key)!r} is not one of {', '.join(options)}")

    choice("variant", VARIANTS)
    choice("backbone", BACKBONES)
    choice("augment", AUGMENTATIONS)
    choice("pooling", POOLINGS)
    choice("mixed_precision", ("auto", "on", "off"))
    choice("optimizer", OPTIMIZERS)
    choice("tta", TTA_MODES)
    if isinstance(c.momentum, float) and not 0.0 <= c.momentum < 1.0:
        problems.append(f"momentum: {c.momentum} must be in [0, 1)")
    for key in ("label_smoothing", "animal_label_smoothing"):
        v = getattr(c, key)
        if isinstance(v, float) and not 0.0 <= v < 1.0:
            problems.append(f"{key}: {v} must be in [0, 1)")
    if isinstance(c.dropout, float) and not 0.0 <= c.dropout < 1.0:
        problems.append(f"dropout: {c.dropout} must be in [0, 1)")
    if isinstance(c.val_split, float) and not 0.0 <= c.val_split < 0.5:
        problems.append(f"val_split: {c.val_split} must be in [0, 0.5)")
    for key, (low, high, why) in WHOLE_BOUNDS.items():
        v = getattr(c, key)
        if isinstance(v, int) and not isinstance(v, bool):
            if v < low:
                problems.append(f"{key}: {v} must be at least {low}")
            elif v > high:
                problems.append(f"{key}: {_shown(v)} is larger than {high:,} ({why})")
    for key, (high, why) in NUMBER_BOUNDS.items():
        v = getattr(c, key)
        if isinstance(v, float) and math.isfinite(v):
            if v < 0:
                problems.append(f"{key}: {v} must be a non-negative number")
            elif v > high:
                problems.append(f"{key}: {v} is larger than {high:g} ({why})")
    _check_warmup(c, problems)
    # SGD on BatchNorm networks runs at rates far above AdamW's (airbench: 1.5).
    max_lr = 10.0 if c.optimizer == "sgd" else 1.0
    for key in ("frozen_lr", "finetune_lr"):
        v = getattr(c, key)
        if isinstance(v, float) and v < 0:
            problems.append(f"{key}: {v} must be a non-negative number")
        elif isinstance(v, float) and v > max_lr:
            problems.append(f"{key}: {v} is larger than {max_lr:g} (the limit for optimizer {c.optimizer!r})")
    if c.backbone in ("resnet9", "airbench") and c.weights == "imagenet":
        problems.append(
            f"weights: 'imagenet' exists only for efficientnetv2b1; {c.backbone} trains from 'none' or a local file"
        )
    if isinstance(c.resnet_width, int) and not isinstance(c.resnet_width, bool) and not 8 <= c.resnet_width <= 256:
        problems.append(f"resnet_width: {c.resnet_width} must be in 8..256")
    if isinstance(c.weights, str) and c.weights not in ("none", "imagenet"):
        if not Path(os.path.expanduser(c.weights)).is_file():
            problems.append(f"weights: {c.weights!r} is neither 'none', 'imagenet' nor an existing file")
    if isinstance(c.frozen_epochs, int) and isinstance(c.finetune_epochs, int):
        if c.frozen_epochs + c.finetune_epochs < 1 and not (c.weights == "none" and c.finetune_epochs >= 1):
            problems.append("frozen_epochs + finetune_epochs: train for at least one epoch")
        if c.weights == "none" and c.finetune_epochs < 1:
            problems.append("finetune_epochs: must be at least 1 when training from scratch (weights 'none')")
    if isinstance(c.name, str):
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}", c.name):
            problems.append(f"name: {c.name!r} must be 1-40 letters, digits, '.', '_' or '-'")


def make_config(values: dict | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Validate `values` (a dict, e.g. from JSON) plus `key=value` strings into a TrainConfig.

    Raises ConfigError listing every unknown key and every bad value.
    """
    values = dict(values or {})
    problems = []
    for item in overrides or []:
        if "=" not in item:
            problems.append(f"--set {item!r}: expected key=value")
            continue
        key, text = item.split("=", 1)
        key = key.strip()
        values[key] = _parse_value(key, text.strip())
    values.pop("$comment", None)
    unknown = sorted(set(values) - set(FIELDS))
    for key in unknown:
        problems.append(f"{key}: unknown key (known keys: {', '.join(FIELDS)})")
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
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return config


CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


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


def load_config_file(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a JSON config file and apply overrides; errors name the file."""
    path = Path(path)
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"config file {path} is not valid JSON: {exc}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a JSON object of settings")
    try:
        return make_config(values, overrides)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
