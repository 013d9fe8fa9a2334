"""The baseline of ``bench_http.py``: a bare FastAPI endpoint that parses a decision and returns a fixed answer.

``POST /v1/decisions`` validates the body with banditgate's own :class:`DecisionRequest` (the same pydantic
model and constraints as the real service) and returns a constant :class:`DecisionResponse` through the same
``response_model`` serialisation. It scores nothing, logs nothing and has no middleware: the gap between it
and the real service, run with the same uvicorn settings, is the cost of deciding and of durable logging.

Run it with ``python -m uvicorn benchmarks.bare_app:app --host 127.0.0.1 --port 8001 --workers 1
--log-level warning --no-access-log`` from the repository root.
"""

from __future__ import annotations

from fastapi import FastAPI

from banditgate.service.schemas import DecisionRequest, DecisionResponse
from benchmarks.workload import ACTION_IDS

_PROBABILITIES = {action_id: (0.91 if i == 0 else 0.01) for i, action_id in enumerate(ACTION_IDS)}

#: The same shape and about the same size as a real answer for 10 actions.
FIXED_RESPONSE = DecisionResponse(
    decision_id="6f1c2a7e-8d4b-4b7e-9a51-3c0f2d9e4b18",
    action_id=ACTION_IDS[0],
    propensity=_PROBABILITIES[ACTION_IDS[0]],
    probabilities=_PROBABILITIES,
    policy="default",
    generation=1,
    exploration="squarecb",
    model_sha256="0" * 64,
    decided_at="2026-11-25T14:00:00.123Z",
)

app = FastAPI(title="bare decision endpoint (benchmark baseline)")


@app.post("/v1/decisions", response_model=DecisionResponse)
async def decide(body: DecisionRequest) -> DecisionResponse:
    """Parse and validate the request like the real service, then answer without deciding or logging."""
    return FIXED_RESPONSE
