"""The Litestar serving app: ``create_app(settings)`` in ``serving.app``."""
