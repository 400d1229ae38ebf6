"""Where the loop keeps things by default, and for how long: one place for serving and the pipeline."""

from __future__ import annotations

# A local file survives restarts and is read by serving, the CLI and the flows alike.
DATABASE_URL = "sqlite:///data/review/labels.db"
IMAGES_URL = "data/review/images"
RETENTION_DAYS = 30.0
