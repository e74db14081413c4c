"""cifar-mtl: train single-task and multitask CIFAR-10 models and analyse their errors.

Data flows one way: cifar10 -> training -> predictions -> analysis -> app.
TensorFlow and Keras live in `cifar_mtl.training` only; no other module imports
them (or that package) at module level, so the app starts fast.
"""

__version__ = "0.1.0"
