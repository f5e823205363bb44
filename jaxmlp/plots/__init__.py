"""Pictures: arrays and rows in, PNG files out.

`run` draws one run's plots (learning curves, gradient norms, confusion matrix, misclassified
images) and `plane` those of a run on 2-D points; `sweep` draws a sweep's (curves with bands
over seeds, final accuracy, a metric against a setting); `layout` is where things go (labels
that do not pile up, a loss axis that shows negative values, legends off the data); `backend`
is matplotlib with Agg and the one way a figure reaches its file; `cli` is
`python -m jaxmlp.plots RUN_DIR`, which redraws a run folder's plots.

Each picture has a `*_figure` function that builds the figure (what the tests measure), apart
from the function its callers use, which saves it.
"""
