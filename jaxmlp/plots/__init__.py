"""Pictures: arrays and rows in, PNG files out.

`run` draws one run's plots (learning curves, gradient norms, confusion matrix, misclassified
images); `sweep` draws a sweep's (curves with bands over seeds, final accuracy, a metric against
a setting); `cli` is `python -m jaxmlp.plots RUN_DIR`, which redraws a run folder's plots.
"""
