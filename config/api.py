from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import ValidationError

from annotate.api import router as annotate_router
from training.api import router as training_router

api = NinjaAPI(title="Duet", version="1", urls_namespace="api-v1")
api.add_router("/", annotate_router)
api.add_router("/", training_router)


@api.exception_handler(ObjectDoesNotExist)
def not_found(request: HttpRequest, exc: ObjectDoesNotExist) -> HttpResponse:
    return api.create_response(request, {"detail": str(exc)}, status=404)


def _field(error: dict[str, Any]) -> str:
    location = [str(part) for part in error.get("loc", ())[1:]]
    return ".".join(location) or "request"


@api.exception_handler(ValidationError)
def validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    """A 400 that names each bad field, rather than the framework's 422."""
    detail = "; ".join(f"{_field(e)}: {e.get('msg', 'invalid')}" for e in exc.errors)
    return api.create_response(request, {"detail": detail, "errors": exc.errors}, status=400)
