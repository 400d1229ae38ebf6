"""The monitoring stage: reading the prediction log, reference samples, drift and its report."""
