"""``python -m serving``: run the app with uvicorn, configured from the environment."""

from __future__ import annotations

import uvicorn

from serving.settings import ServingSettings, get_settings

FACTORY = "serving.app:app_factory"


def uvicorn_options(settings: ServingSettings) -> dict:
    """uvicorn's options for this app: address, idle keep-alive limit, no access log of its own.

    uvicorn has no body-read timeout; the app sets one (``BODY_TIMEOUT_SECONDS``).
    """
    return dict(
        host=settings.serving_host,
        port=settings.serving_port,
        access_log=False,
        timeout_keep_alive=settings.keep_alive_timeout_seconds,
        # uvicorn rewrites the client address from X-Forwarded-For, for trusted proxies only.
        proxy_headers=True,
        forwarded_allow_ips=settings.trusted_proxies,
    )


def run(settings: ServingSettings) -> None:
    """Serves the app until interrupted.

    With one worker the app is built from ``settings``. With several, uvicorn starts worker
    processes that each call ``serving.app:app_factory``, which reads the same environment
    (so pass settings through the environment when using workers).
    """
    options = uvicorn_options(settings)
    if settings.serving_workers > 1:
        uvicorn.run(FACTORY, factory=True, workers=settings.serving_workers, **options)
        return
    from serving.app import create_app

    uvicorn.run(create_app(settings), **options)


if __name__ == "__main__":
    run(get_settings())
