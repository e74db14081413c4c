"""cifar-mtl: train single-task and multitask CIFAR-10 models and analyse their errors.

Data flows one way: data -> model -> train -> predictions -> analysis -> app.
Modules that the app imports (labels, runs, predictions, reviews, analysis, ...)
never import TensorFlow at module level, so the app starts fast.
"""

__version__ = "0.1.0"
