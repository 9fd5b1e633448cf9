"""What every request and response passes through: the login requirement, the security headers, and
the binding of the request's user as the actor of whatever it audits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth.middleware import LoginRequiredMiddleware
from django.http import HttpRequest, HttpResponseBase

from annotate.services.audit import audit_request_bound

# No inline script or style anywhere, so the policy can refuse both: htmx and our own code
# load from /static/, and model text that slipped past the sanitiser still could not run.
_DIRECTIVES = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self'",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}
CONTENT_SECURITY_POLICY = "; ".join(f"{name} {value}" for name, value in _DIRECTIVES.items())

# The API's Swagger UI (ninja's own copy, served from /static/) draws its icons as data: images
# in its stylesheet; an image cannot run script, so its page allows them and nothing else more.
API_DOCS_PATH = "/api/v1/docs"
API_DOCS_POLICY = "; ".join(f"{name} {value}" for name, value in {**_DIRECTIVES, "img-src": "'self' data:"}.items())

# django-rq's dashboard ships inline scripts (its job lists' actions); under the policy they
# would stop working, and the dashboard shows no model text, so it keeps running without one.
CSP_EXEMPT_PATH_PREFIXES = ("/django-rq/",)


class LoginRequiredExceptApiMiddleware(LoginRequiredMiddleware):
    """Every page needs a login; the JSON API authenticates with its own bearer tokens."""

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponseBase | None:
        if request.path.startswith("/api/"):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)


class ContentSecurityPolicyMiddleware:
    """The strict policy on every response: pages, partials, redirects, error pages, downloads.

    A response that set its own policy keeps it. Listed first in ``MIDDLEWARE`` so that the
    responses other middleware make (a login redirect, a CSRF refusal, a 404) carry it too.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if not request.path.startswith(CSP_EXEMPT_PATH_PREFIXES):
            policy = API_DOCS_POLICY if request.path == API_DOCS_PATH else CONTENT_SECURITY_POLICY
            response.headers.setdefault("Content-Security-Policy", policy)
        return response


class AuditActorMiddleware:
    """Names the request's user (signed in, or authenticated by a bearer token later on) in the audit log."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        with audit_request_bound(request):
            return self.get_response(request)
