import numpy as np
import pytest

from cifar_mtl.training.targets import make_targets, smooth_binary_targets, smooth_class_targets


def test_class_targets_follow_the_method_rule():
    t = smooth_class_targets(np.array([3, 0]), eps=0.1)
    # hand-computed: 1 - 0.1 = 0.9 on the label, 0.1 / 9 = 0.0111... elsewhere
    assert t[0, 3] == pytest.approx(0.9)
    assert t[0, 0] == pytest.approx(0.1 / 9)
    assert t[1, 0] == pytest.approx(0.9) and t[1, 9] == pytest.approx(0.011111111)
    np.testing.assert_allclose(t.sum(axis=1), 1.0, rtol=1e-6)
    # Keras's rule would give 0.91 and 0.01: make sure that is not what we produce
    assert t[0, 3] != pytest.approx(0.91)


def test_eps_zero_is_one_hot():
    t = smooth_class_targets(np.array([7]), eps=0.0)
    assert t[0, 7] == 1.0 and t.sum() == 1.0


def test_binary_targets_and_separate_eps():
    np.testing.assert_allclose(smooth_binary_targets(np.array([1, 0]), 0.2).ravel(), [0.8, 0.2])
    t = make_targets(np.array([2, 9]), eps=0.1, animal_eps=0.05, multitask=True)
    np.testing.assert_allclose(t["animal"].ravel(), [0.95, 0.05])  # bird is an animal, truck is not
    assert "animal" not in make_targets(np.array([2]), 0.1, None, multitask=False)


def test_bad_eps_is_refused():
    with pytest.raises(ValueError, match="must be in"):
        smooth_class_targets(np.array([1]), 1.0)


@pytest.mark.parametrize("preset", ["mixup", "cutmix"])
def test_mixing_keeps_class_and_animal_targets_consistent(preset):
    import tensorflow as tf

    from cifar_mtl.training.augment import build_augmenter
    from cifar_mtl.synthetic import fake_images

    labels = np.array([0, 2, 8, 3, 1, 5, 9, 6] * 4)  # vehicles and animals interleaved
    targets = make_targets(labels, eps=0.1, animal_eps=0.1, multitask=True)
    augment = build_augmenter(preset, seed=4)
    _, mixed = augment(tf.constant(fake_images(labels), tf.float32), {k: tf.constant(v) for k, v in targets.items()})
    c, a = mixed["class"].numpy(), mixed["animal"].numpy().ravel()
    np.testing.assert_allclose(c.sum(axis=1), 1.0, rtol=1e-5)
    hi, lo = 0.9, 0.1 / 9
    checked = 0
    for i, y in enumerate(labels):
        # weight of the image's own label: c[y] = w * 0.9 + (1 - w) * t_other[y]
        partner = [k for k in range(10) if k != y and c[i, k] > lo + 1e-4]
        if len(partner) != 1:
            continue  # mixed with an image of the same class: nothing to check
        w = (c[i, y] - lo) / (hi - lo)
        z = partner[0]
        # the class target is a convex mix of two smoothed one-hots with the same weight
        assert c[i, z] == pytest.approx((1 - w) * hi + w * lo, abs=1e-4)
        animal_i = 0.9 if 2 <= y <= 7 else 0.1
        animal_z = 0.9 if 2 <= z <= 7 else 0.1
        assert a[i] == pytest.approx(w * animal_i + (1 - w) * animal_z, abs=1e-4)
        checked += 1
    assert checked >= 5
