"""Stores over the project's one database (`<home>/cifar-mtl.sqlite`).

- `database`: connections, schema versions per component, migrations, write
  transactions, the one timestamp format, the engine boundary (SQLite today).
- `reviews`: `ReviewStore`, reviewers' tags, notes and mislabel verdicts.
- `jobqueue`: `JobQueue`, the rows of the retrain job queue (`cifar_mtl.jobs` runs them).

Nothing here imports Streamlit or TensorFlow.
"""
