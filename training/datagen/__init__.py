"""``mediqa data build``: real source slices + physical degradations -> a versioned training data set.

Pipeline: config -> sources (real series, read with the agent's own DICOM reader) -> splits (by series
group and vendor) -> tasks (one per source slice, run in a process pool) -> writer (arrays + manifest,
format in docs/dataset-format.md). ``preview`` draws a source x degradation-level grid to check by eye.
"""
