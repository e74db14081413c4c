"""CIFAR-10 class names and the animal/vehicle split used by the multitask head."""

import numpy as np

CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
NUM_CLASSES = len(CLASS_NAMES)

# The animal head's target: 1 for bird, cat, deer, dog, frog, horse.
ANIMAL_CLASSES = (2, 3, 4, 5, 6, 7)
IS_ANIMAL = np.zeros(NUM_CLASSES, dtype=bool)
IS_ANIMAL[list(ANIMAL_CLASSES)] = True


def class_name(label: int) -> str:
    """Name of a class index 0..9; raises ValueError for anything else."""
    label = int(label)
    if not 0 <= label < NUM_CLASSES:
        raise ValueError(f"class index {label} is outside 0..{NUM_CLASSES - 1}")
    return CLASS_NAMES[label]


def class_names(labels) -> np.ndarray:
    """Names of class indices 0..9 as an object array shaped like `labels` (e.g. (N,) -> (N,))."""
    return _NAME_ARRAY[np.asarray(labels, dtype=np.int64)]


_NAME_ARRAY = np.array(CLASS_NAMES, dtype=object)


def is_animal(labels) -> np.ndarray:
    """Boolean array, True where the class index is an animal class. Shape as `labels`."""
    return IS_ANIMAL[np.asarray(labels, dtype=np.int64)]
