"""The data stage: loading, validation, the split, shifts, features, ingest, the generator."""
