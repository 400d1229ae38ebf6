"""What the app tells operators: metrics, per-region stats and logs."""
