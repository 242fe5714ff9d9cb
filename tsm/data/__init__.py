"""Datasets, task-neutral: the dataset build of any task (``build.py``, ``python -m tsm.data``), its
row schema (``schema.py``), the fresh-data streams, SFT targets and DataModules; what is specific to
a task lives in ``tsm/tasks/<name>/``. Import submodules directly; this package init stays empty so
importing one part does not load the others."""
