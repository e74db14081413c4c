import numpy as np
import pytest

from cifar_mtl.training.models import backbone, build_backbone, build_model, set_stage

pytestmark = pytest.mark.slow  # builds whole networks: left out of the inner loop


@pytest.fixture(scope="module")
def local_weights(tmp_path_factory):
    """A backbone weights file standing in for a downloaded ImageNet file."""
    path = tmp_path_factory.mktemp("weights") / "effnetv2b1_notop.weights.h5"
    base = build_backbone()
    # Non-trivial BatchNorm statistics, so a change to them would show.
    for layer in base.layers:
        if layer.__class__.__name__ == "BatchNormalization":
            layer.moving_mean.assign(np.full(layer.moving_mean.shape, 0.5, "float32"))
    base.save_weights(path)
    return str(path)


@pytest.mark.parametrize("variant", ["single", "multitask"])
def test_outputs(variant):
    model = build_model(variant=variant)
    out = model(np.random.uniform(0, 255, (2, 32, 32, 3)).astype("float32"))
    assert out["class"].shape == (2, 10)
    np.testing.assert_allclose(np.asarray(out["class"]).sum(axis=1), 1.0, rtol=1e-5)
    if variant == "multitask":
        assert out["animal"].shape == (2, 1)
    else:
        assert set(out) == {"class"}


def test_image_size_resizes_inside_the_model():
    model = build_model(image_size=64, variant="single")
    assert model.get_layer("resize").output.shape[1:3] == (64, 64)
    assert model.input.shape[1:] == (32, 32, 3)


def test_trainable_weights_per_stage(local_weights):
    model = build_model(weights=local_weights)
    heads = {"class", "animal"}
    set_stage(model, "frozen")
    names = {w.path.split("/")[0] for w in model.trainable_weights}
    assert names == heads  # only the two heads' kernels and biases
    assert len(model.trainable_weights) == 4
    set_stage(model, "finetune", freeze_batchnorm=False)
    assert len(model.trainable_weights) > 100
    n_all = len(model.trainable_weights)
    set_stage(model, "finetune", finetune_blocks=2, freeze_batchnorm=False)
    trainable = [w.path for w in backbone(model).trainable_weights]
    assert 0 < len(trainable) < n_all
    assert all(p.startswith(("block6", "top_")) for p in trainable), trainable[:5]


def test_batchnorm_stays_in_inference_mode_while_fine_tuning(local_weights):
    model = build_model(weights=local_weights, variant="single")
    set_stage(model, "finetune")
    bn = next(l for l in backbone(model).layers if l.__class__.__name__ == "BatchNormalization")
    before = np.asarray(bn.moving_mean).copy()
    assert np.allclose(before, 0.5)  # the local weights file was loaded
    x = np.random.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    model(x, training=True)
    trainable = [w.path for w in model.trainable_weights]
    assert len(trainable) > 50 and not any("_bn/" in p for p in trainable)  # convs train, BatchNorm does not
    np.testing.assert_array_equal(np.asarray(bn.moving_mean), before)
    # from scratch, BatchNorm learns its statistics: the same call moves them
    scratch = build_model(variant="single")
    set_stage(scratch, "finetune", freeze_batchnorm=False)
    bn2 = next(l for l in backbone(scratch).layers if l.__class__.__name__ == "BatchNormalization")
    before2 = np.asarray(bn2.moving_mean).copy()
    scratch(x, training=True)
    assert not np.array_equal(np.asarray(bn2.moving_mean), before2)
