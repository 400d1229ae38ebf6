"""The HTTP floor: the least a Litestar app on uvicorn costs per classify request.

One route, ``POST /api/vehicle/classify``, that reads the raw body and answers a JSON object
shaped like the real answer: no model, no stores, no middleware, no logging, run with the
serving app's own uvicorn options. ``bench/serving.py`` measures it beside the app, so the
difference between the two rows is what this service's own features cost per request, and
what is left of a target once this floor is paid is what any Python service of this kind
could reach.

    SERVING_PORT=8001 .venv/bin/python -P bench/http_floor.py   # -P: bench/serving.py would shadow serving/
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from concurrent.futures import ThreadPoolExecutor

import uvicorn
from litestar import Litestar, Request, get, post

from serving.__main__ import uvicorn_options
from serving.settings import get_settings

ANSWER = {
    "model": {"name": "vehicle-classifier", "version": "1"},
    "predictions": {
        "vehicle_type": {"label": "sedan", "confidence": 0.9, "top_k": [{"label": "sedan", "probability": 0.9}]},
        "colour": {"label": "red", "confidence": 0.9, "top_k": [{"label": "red", "probability": 0.9}]},
    },
    "cached": False,
}


WORKER = ThreadPoolExecutor(1, thread_name_prefix="hold")


def hold(seconds: float) -> None:
    """Keeps a core busy for ``seconds``, as the model does on an inference thread."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@post("/api/vehicle/classify", status_code=200)
async def classify(request: Request) -> dict:
    body = await request.body()
    if hold_ms := float(request.query_params.get("hold_ms", 0)):
        await asyncio.get_running_loop().run_in_executor(WORKER, hold, hold_ms / 1000)
    return {**ANSWER, "sha256": hashlib.sha256(body).hexdigest()}


@get("/ready")
async def ready() -> dict:
    return {"status": "ready"}


def main() -> None:
    uvicorn.run(Litestar(route_handlers=[classify, ready], logging_config=None), **uvicorn_options(get_settings()))


if __name__ == "__main__":
    main()
