"""Datasets: the differentiation dataset build (``build.py``, ``python -m tsm.data``), its row
schema (``schema.py``), SFT targets and DataModules. Import submodules directly; this package
init stays empty so importing one part does not load the others."""
