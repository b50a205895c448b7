"""Models of a subnet's accuracy and latency.

`predictors.latency`: targets, measurement, per-layer lookup tables (OFA's YAML format too) and
learned latency predictors. `predictors.accuracy`: accuracy predictors (issue 6).
"""
