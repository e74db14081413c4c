"""Training and prediction: every module of the project that imports TensorFlow or Keras.

    pipeline   tf.data input pipelines over CIFAR-10 arrays (training, validation, test views)
    augment    augmentation presets (Keras layers, MixUp/CutMix) and test-time views
    targets    the method's label smoothing, as soft targets for the heads
    models     the networks: EfficientNetV2B1, ResNet-9, the airbench net, with their heads
    tracking   a run's progress.json, history.csv, train.log and cancel flag while it trains
    fit        two-stage training that leaves a complete run folder (`train`)
    predict    test-set predictions, predictions.parquet and metrics.json (`predict_run`)

The rest of `cifar_mtl` works on arrays and tables and never imports this package at
module level; `cli` imports it inside the `train` and `predict` commands only.
"""
