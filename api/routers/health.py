"""Health and stats: whether the process is up and an index loaded, and what that index holds."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Request

from semsearch.api.deps import SearcherDep
from semsearch.api.schemas import HealthOut, StatsOut

router = APIRouter()


@router.get("/health", response_model=HealthOut, summary="Liveness, and whether an index is loaded")
def health(request: Request) -> HealthOut:
    return HealthOut(status="ok", index_loaded=request.app.state.live.loaded)


@router.get("/stats", response_model=StatsOut, summary="What the loaded index holds")
def stats(request: Request, engine: SearcherDep) -> StatsOut:
    error = request.app.state.live.last_error
    plan = engine.embedder.plan
    return StatsOut(
        **asdict(engine.stats()), query_plan=plan.name if plan else None, reload_error=str(error) if error else None
    )
