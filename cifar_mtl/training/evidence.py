"""The model's side of a run's evidence: embeddings and saliency maps.

`embed` runs the model up to its pooled penultimate features (the `pool` layer every
backbone ends in, see `models.build_model`); `saliency_maps` explains a class score
per pixel; `write_evidence` writes both into a run folder and hands the embeddings to
`cifar_mtl.evidence.build` for the neighbours, near-duplicates, map and slices.

Saliency: Grad-CAM weighs a feature map by its pooled gradients: the backbone's last for
airbench (3x3) and ResNet-9 (4x4); EfficientNetV2B1 at 32x32 ends at 1x1, so there it is
the deepest map of 3x3 or more (`_cam_layer`). SmoothGrad
(Smilkov et al. 2017: the input gradient averaged over noisy copies) is per pixel on every
backbone. `compare_saliency` scores both on real errors by deletion and insertion
(Petsiuk et al. 2018); Grad-CAM scored better at an eighth of the cost and is the default
(docs/design.md has the figures).
"""

from __future__ import annotations

import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from scipy.ndimage import gaussian_filter

from cifar_mtl import runs
from cifar_mtl.cifar10 import load_cifar10, load_test_set, resolve_source
from cifar_mtl.config import TrainConfig, make_config
from cifar_mtl.errors import UserError
from cifar_mtl.evidence import files
from cifar_mtl.evidence.build import build_evidence
from cifar_mtl.predictions import validate_predictions
from cifar_mtl.training.models import BACKBONE_NAME, ScaledShift
from cifar_mtl.training.pipeline import PREDICT_BATCH, predict_dataset
from cifar_mtl.training.tracking import CancelFlag

SALIENCY_METHODS = ("gradcam", "smoothgrad")
SALIENCY_METHOD = "auto"  # Grad-CAM at the deepest map of 3x3 or more (`_cam_layer`, `choose_method`)
MIN_GRADCAM_SIDE = 3  # a 1x1 or 2x2 last feature map gives Grad-CAM nothing to point at
SMOOTHGRAD_SAMPLES = 12
SMOOTHGRAD_NOISE = 0.15  # the noise's standard deviation, as a fraction of the pixel range
SALIENCY_BATCH = 128
BLUR_SIGMA = 3.0  # pixels: what the deletion score puts in place of a deleted pixel


def load_model(folder: Path):
    """The run folder's saved Keras model (model.keras), without its training state."""
    path = Path(folder) / runs.MODEL_FILE
    if not path.exists():
        raise runs.RunError(
            f"{path} is missing: evidence needs the trained model; retrain the run to get it"
        )
    custom = {keras.saving.get_registered_name(ScaledShift): ScaledShift}
    return keras.models.load_model(path, compile=False, custom_objects=custom)


def _cam_layer(base) -> str | None:
    """The backbone's deepest layer with a feature map at least MIN_GRADCAM_SIDE on a side (padding
    layers aside), or None when that is its output: Grad-CAM's layer. EfficientNetV2B1 at 32x32
    ends at 1x1, where Grad-CAM would be one flat value; its 4x4 stage is the deepest that is not."""
    for layer in reversed(base.layers):
        shape = getattr(layer, "output", None) is not None and layer.output.shape
        if not shape or len(shape) != 4 or "padding" in layer.name.lower() or "ZeroPadding" in type(layer).__name__:
            continue
        if shape[1] is not None and shape[1] >= MIN_GRADCAM_SIDE:
            return None if layer.output is base.output else layer.name
    return None


def _probe_model(model):
    """image (B, 32, 32, 3) in [0, 255] -> [Grad-CAM's feature map (B, s, s, C), features (B, D), class (B, 10)].

    The layers are the model's own (shared weights); dropout is left out, as at inference.
    """
    inputs = keras.Input(shape=(32, 32, 3), name="image")
    x = inputs
    if any(layer.name == "resize" for layer in model.layers):
        x = model.get_layer("resize")(x)
    base = model.get_layer(BACKBONE_NAME)
    cam = _cam_layer(base)
    if cam is None:
        fmap = last = base(x)
    else:
        fmap, last = keras.Model(base.input, [base.get_layer(cam).output, base.output], name="backbone_cam")(x)
    features = model.get_layer("pool")(last)
    probs = model.get_layer("class")(features)
    return keras.Model(inputs, [fmap, features, probs], name=f"{model.name}_probe")


def embed(model, images: np.ndarray, batch_size: int = PREDICT_BATCH, probe=None) -> np.ndarray:
    """Pooled penultimate features of uint8 images (N, 32, 32, 3): float32 (N, D), L2-normalised."""
    probe = probe or _probe_model(model)
    features = keras.Model(probe.input, probe.outputs[1])
    out = features.predict(predict_dataset(images, batch_size), verbose=0)
    out = np.asarray(out, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-12)


def _class_scores(probs, classes):
    classes = tf.convert_to_tensor(np.asarray(classes, np.int32))
    return tf.gather(tf.cast(probs, tf.float32), classes, axis=1, batch_dims=1)


def _logit_scores(probe, features, classes):
    """The class head's pre-softmax scores for `classes`: their gradients do not vanish when
    the softmax saturates, as the probabilities' do (the usual target of both methods)."""
    head = probe.get_layer("class")
    kernel, bias = (tf.cast(w, tf.float32) for w in (head.kernel, head.bias))
    logits = tf.matmul(tf.cast(features, tf.float32), kernel) + bias
    return _class_scores(logits, classes)


def gradcam(probe, images: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Grad-CAM at the last spatial layer for `classes` (N,): float32 (N, 32, 32) in [0, 1]."""
    x = tf.convert_to_tensor(images, tf.float32)
    with tf.GradientTape() as tape:
        fmap, features, _ = probe(x, training=False)
        tape.watch(fmap)
        score = _logit_scores(probe, features, classes)
    grads = tf.cast(tape.gradient(score, fmap), tf.float32)
    fmap = tf.cast(fmap, tf.float32)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * fmap, axis=-1, keepdims=True))
    cam = tf.image.resize(cam, (32, 32), method="bilinear")[..., 0]
    return _unit_range(cam.numpy())


def smoothgrad(
    probe, images: np.ndarray, classes: np.ndarray, samples: int = SMOOTHGRAD_SAMPLES,
    noise: float = SMOOTHGRAD_NOISE, seed: int = 0,
) -> np.ndarray:
    """SmoothGrad for `classes` (N,): the input gradient's magnitude over `samples` noisy
    copies (noise std `noise` x 255), summed over colour channels; float32 (N, 32, 32) in [0, 1]."""
    rng = np.random.default_rng(seed)
    x = np.asarray(images, np.float32)
    total = np.zeros(x.shape[:3], np.float32)
    for _ in range(samples):
        noisy = tf.convert_to_tensor(x + rng.normal(0.0, noise * 255.0, x.shape).astype(np.float32))
        with tf.GradientTape() as tape:
            tape.watch(noisy)
            _, features, _ = probe(noisy, training=False)
            score = _logit_scores(probe, features, classes)
        grad = tf.cast(tape.gradient(score, noisy), tf.float32).numpy()
        total += np.abs(grad).sum(axis=-1)
    return _unit_range(total / samples)


def _unit_range(maps: np.ndarray) -> np.ndarray:
    """Each map scaled to [0, 1] by its own maximum (all-zero maps stay zero)."""
    maps = np.asarray(maps, np.float32)
    peak = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, 1, 1)
    return np.where(peak > 0, maps / np.maximum(peak, 1e-12), 0.0).astype(np.float32)


def choose_method(probe) -> str:
    """Grad-CAM when its feature map is at least MIN_GRADCAM_SIDE on a side (always, with
    `_cam_layer`), else SmoothGrad. On real errors of the fast recipe Grad-CAM found what the
    predicted class rests on a little better than SmoothGrad at an eighth of the cost (docs/design.md)."""
    side = probe.outputs[0].shape[1]
    return "gradcam" if side is not None and side >= MIN_GRADCAM_SIDE else "smoothgrad"


def saliency_maps(
    model, images: np.ndarray, classes: np.ndarray, method: str = SALIENCY_METHOD,
    batch_size: int = SALIENCY_BATCH, probe=None, cancel: CancelFlag | None = None,
) -> np.ndarray:
    """Per-pixel saliency of uint8 images (N, 32, 32, 3) for `classes` (N,): uint8 (N, 32, 32), 255 = most salient."""
    if method not in (*SALIENCY_METHODS, "auto"):
        raise UserError(f"unknown saliency method {method!r}; expected one of {SALIENCY_METHODS} or 'auto'")
    probe = probe or _probe_model(model)
    if method == "auto":
        method = choose_method(probe)
    fn = gradcam if method == "gradcam" else smoothgrad
    classes = np.asarray(classes, np.int32)
    out = np.zeros((len(images), 32, 32), np.uint8)
    for start in range(0, len(images), batch_size):
        if cancel is not None:
            cancel.check()
        stop = start + batch_size
        maps = fn(probe, images[start:stop], classes[start:stop])
        out[start:stop] = np.round(maps * 255).astype(np.uint8)
    return out


def _reveal_curve(probe, images, classes, maps, steps, batch_size, start_from_blur: bool) -> np.ndarray:
    """Class probability (N, steps + 1) as the most salient pixels are deleted (replaced by a
    blurred copy) or, with `start_from_blur`, inserted into the blurred copy, 1/steps at a time."""
    images = np.asarray(images, np.float32)
    n = len(images)
    jitter = 1e-6 * np.random.default_rng(0).random((n, 1024))  # ties (flat maps) in random order
    order = np.argsort(-maps.reshape(n, -1).astype(np.float32) + jitter, axis=1)
    blurred = gaussian_filter(images, sigma=(0, BLUR_SIGMA, BLUR_SIGMA, 0))
    curve = np.zeros((n, steps + 1), np.float32)
    for step in range(steps + 1):
        mask = np.zeros((n, 1024), bool)
        np.put_along_axis(mask, order[:, :round(step * 1024 / steps)], True, axis=1)
        mask = mask.reshape(n, 32, 32, 1)
        shown = np.where(mask, images, blurred) if start_from_blur else np.where(mask, blurred, images)
        for start in range(0, n, batch_size):
            _, _, probs = probe(tf.convert_to_tensor(shown[start:start + batch_size]), training=False)
            curve[start:start + batch_size, step] = _class_scores(probs, classes[start:start + batch_size]).numpy()
    return curve


def deletion_score(probe, images, classes, maps, steps: int = 16, batch_size: int = SALIENCY_BATCH) -> np.ndarray:
    """Deletion score per image (N,), Petsiuk et al. 2018: the mean class probability as the most
    salient pixels are replaced by a blurred copy of the image (lower: the map found what the
    score rests on). Blurred rather than flat, so scattered deleted pixels add no edges."""
    return _reveal_curve(probe, images, classes, maps, steps, batch_size, start_from_blur=False).mean(axis=1)


def insertion_score(probe, images, classes, maps, steps: int = 16, batch_size: int = SALIENCY_BATCH) -> np.ndarray:
    """Insertion score per image (N,): the mean class probability as the most salient pixels are
    put back into a blurred copy of the image (higher: the map found what the score rests on)."""
    return _reveal_curve(probe, images, classes, maps, steps, batch_size, start_from_blur=True).mean(axis=1)


def compare_saliency(model, images: np.ndarray, classes: np.ndarray, methods=SALIENCY_METHODS) -> dict:
    """Deletion (lower is better) and insertion (higher is better) scores, means over the images,
    and seconds per map of each method, with random maps as the floor."""
    probe = _probe_model(model)
    result = {}
    rng = np.random.default_rng(0)
    for method in (*methods, "random"):
        t0 = time.perf_counter()
        if method == "random":
            maps = rng.integers(0, 256, (len(images), 32, 32)).astype(np.uint8)
        else:
            maps = saliency_maps(model, images, classes, method, probe=probe)
        seconds = (time.perf_counter() - t0) / len(images)
        result[method] = {
            "deletion": float(deletion_score(probe, images, classes, maps).mean()),
            "insertion": float(insertion_score(probe, images, classes, maps).mean()),
            "seconds_per_image": 0.0 if method == "random" else seconds,
        }
    return result


def write_evidence(
    folder: Path, model, x_test: np.ndarray, y_test: np.ndarray,
    x_train: np.ndarray | None = None, y_train: np.ndarray | None = None,
    log=print, cancel: CancelFlag | None = None,
) -> dict:
    """Write every evidence file of a run whose predictions.parquet exists; return {step: seconds}.

    Embeddings of the test images (and of the training images when given), saliency of
    every misclassified test image for its predicted and its true class, then
    `evidence.build.build_evidence` (neighbours, near-duplicates, map, slices).
    """
    folder = Path(folder)
    predictions = validate_predictions(pd.read_parquet(folder / runs.PREDICTIONS_FILE), expected_rows=len(y_test))
    probe = _probe_model(model)
    seconds = {}
    t0 = time.perf_counter()
    test_emb = embed(model, x_test, probe=probe)
    train_emb = embed(model, x_train, probe=probe) if x_train is not None else None
    files.write_embeddings(folder, test_emb, train_emb)
    seconds["embeddings"] = time.perf_counter() - t0
    if cancel is not None:
        cancel.check()

    t0 = time.perf_counter()
    errors = predictions[~predictions["correct"]]
    index = errors["index"].to_numpy()
    pred_map = saliency_maps(model, x_test[index], errors["pred"].to_numpy(), probe=probe, cancel=cancel)
    true_map = saliency_maps(model, x_test[index], errors["label"].to_numpy(), probe=probe, cancel=cancel)
    files.write_saliency(folder, index, pred_map, true_map)
    seconds["saliency"] = time.perf_counter() - t0
    log(f"saliency by {choose_method(probe)} for {len(index)} misclassified test images")

    seconds.update(build_evidence(
        folder, predictions, test_emb, train_emb, y_train, test_images=x_test, train_images=x_train,
    ))
    log("wrote evidence (" + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()) + ")")
    return seconds


def evidence_run(run_id: str, home_dir=None, with_train: bool = True, log=print) -> dict:
    """(Re)compute a run's evidence files from its saved model; returns {step: seconds}.

    `with_train`: also embed the 50,000 training images (needed for neighbours and
    near-duplicates); without the training set at hand, only the test side is written.
    """
    folder = runs.run_dir(run_id, home_dir)
    if not (folder / runs.PREDICTIONS_FILE).exists():
        raise runs.RunError(
            f"run {run_id!r} has no {runs.PREDICTIONS_FILE}; run `python -m cifar_mtl predict --run {run_id}` first"
        )
    config: TrainConfig = make_config(runs.load_config(run_id, home_dir))
    model = load_model(folder)
    source = resolve_source(config.data_dir)
    if with_train:
        data = load_cifar10(source, allow_download=False)
        return write_evidence(folder, model, data.x_test, data.y_test, data.x_train, data.y_train, log)
    x_test, y_test = load_test_set(source)
    return write_evidence(folder, model, x_test, y_test, log=log)
