"""Prefect flows: the story of a run, wiring the steps in ``tasks``."""
