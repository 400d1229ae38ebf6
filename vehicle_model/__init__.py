"""Everything that runs at inference time; logged with each model as ``code_paths``."""
