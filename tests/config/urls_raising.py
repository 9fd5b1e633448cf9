"""The project's URLs plus one view that fails, to see what a 500 response carries."""

from django.urls import path

from config.urls import urlpatterns as project_urlpatterns


def _fail(request):  # type: ignore[no-untyped-def]
    raise RuntimeError("a bug")


urlpatterns = [*project_urlpatterns, path("boom/", _fail)]
