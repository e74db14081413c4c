"""Evidence for each error, computed from a run's embeddings: nearest training images,
near-duplicates, a 2-D map, error slices and category suggestions.

NumPy, pandas, pyarrow, scikit-learn and SciPy only: nothing here imports TensorFlow
or Streamlit. The embeddings and saliency maps come from `cifar_mtl.training`, which
writes them through `files`; the app reads every file back through `files`.

    files        file names, atomic writes, validating reads (`EvidenceError`)
    neighbours   exact cosine nearest training images
    duplicates   near-duplicate and label-conflict flags from the nearest neighbour
    layout       2-D map of the embeddings
    slices       clusters of the misclassified images and their summary
    suggestions  a per-reviewer classifier that proposes categories
    build        all of the above into a run folder
"""
