"""Stores over the project's one database: `<home>/cifar-mtl.sqlite`, or a team's
PostgreSQL database when `CIFAR_MTL_DB` names one.

- `database`: connections, schema versions per component, migrations, write
  transactions, the one timestamp format, the two engines (SQLite, PostgreSQL).
- `reviews`: `ReviewStore`, reviewers' tags (single and bulk), notes, mislabel
  verdicts, and undo.
- `jobqueue`: `JobQueue`, the rows of the retrain job queue and their claims
  (`cifar_mtl.jobs` and `cifar_mtl.worker` run them).
- `copy`: an SQLite database copied into PostgreSQL (`cifar_mtl db copy`).
- `localserver`: a throwaway local PostgreSQL server for tests and benchmarks.

Nothing here imports Streamlit or TensorFlow.
"""
