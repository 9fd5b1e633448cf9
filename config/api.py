from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.http import HttpRequest, HttpResponse
from django.utils.datastructures import MultiValueDict
from ninja import NinjaAPI
from ninja.errors import HttpError, ValidationError
from ninja.parser import Parser

from annotate.api import router as annotate_router
from annotate.api_campaigns import router as campaigns_router
from annotate.api_quality import router as quality_router
from config.api_types import NulInText, nul_check
from training.api import router as training_router


class CheckedParser(Parser):
    """Ninja's parser, refusing text the database could not store before any operation sees it.

    One check for every operation's query string, form fields and JSON body: a NUL character would
    reach PostgreSQL as a query parameter or a stored value and fail there as a server error.
    """

    def parse_body(self, request: HttpRequest) -> Any:
        data = super().parse_body(request)
        nul_check(data, "body")
        return data

    def parse_querydict(self, data: MultiValueDict, list_fields: list[str], request: HttpRequest) -> Any:
        parsed = super().parse_querydict(data, list_fields, request)
        for name, value in parsed.items():
            if not hasattr(value, "read"):  # an uploaded file's content is the import's to judge
                nul_check(value, name)
        return parsed


api = NinjaAPI(title="Duet", version="1", urls_namespace="api-v1", parser=CheckedParser())
api.add_router("/", annotate_router)
api.add_router("/", campaigns_router)
api.add_router("/", training_router)
api.add_router("/", quality_router)


@api.exception_handler(ObjectDoesNotExist)
def not_found(request: HttpRequest, exc: ObjectDoesNotExist) -> HttpResponse:
    return api.create_response(request, {"detail": str(exc)}, status=404)


@api.exception_handler(NulInText)
def nul_in_text(request: HttpRequest, exc: NulInText) -> HttpResponse:
    return api.create_response(request, {"detail": str(exc)}, status=400)


@api.exception_handler(HttpError)
def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    """Ninja's own errors; a body refused by the parser's NUL check says which field, not "cannot parse"."""
    cause = exc.__cause__
    detail = str(cause) if isinstance(cause, NulInText) else str(exc)
    return api.create_response(request, {"detail": detail}, status=exc.status_code)


def _field(error: dict[str, Any]) -> str:
    location = [str(part) for part in error.get("loc", ())[1:]]
    return ".".join(location) or "request"


@api.exception_handler(ValidationError)
def validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    """A 400 that names each bad field, rather than the framework's 422."""
    detail = "; ".join(f"{_field(e)}: {e.get('msg', 'invalid')}" for e in exc.errors)
    return api.create_response(request, {"detail": detail, "errors": exc.errors}, status=400)
