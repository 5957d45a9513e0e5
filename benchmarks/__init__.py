"""Speed, measured, never asserted: ``python -m benchmarks.speed`` (training and inference against the
seed implementation and the machine's limit), ``benchmarks.page`` (the dashboard in a real browser),
``benchmarks.steps`` (the training steps the queue chooses between), ``benchmarks.analysis`` (one
input's analysis) and ``benchmarks.attack`` (one live attack); each writes the JSON under docs/ that
docs/speed.md reads."""
