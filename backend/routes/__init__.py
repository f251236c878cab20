"""REST routes, one module per resource; ``api_router`` mounts them all under /api."""
from fastapi import APIRouter

from backend.routes import analyses, auth, comparisons, export, meta, metrics, results, runs, sweeps

api_router = APIRouter(prefix="/api")
api_router.include_router(meta.router)
api_router.include_router(auth.router)
api_router.include_router(runs.router)
api_router.include_router(export.router)
api_router.include_router(comparisons.router)
api_router.include_router(metrics.router)
api_router.include_router(results.router)
api_router.include_router(sweeps.router)
api_router.include_router(analyses.router)

__all__ = ["api_router"]
