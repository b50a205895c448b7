"""Accuracy and latency predictors of subnets (not built yet: issues 5 and 6)."""
