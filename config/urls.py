from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import URLPattern, include, path
from django.views.generic import RedirectView

from annotate import security_views
from config.api import api
from config.auth import ThrottledAdminAuthenticationForm, ThrottledLoginView

# The admin's own login page counts failures in the same throttle as ours.
admin.site.login_form = ThrottledAdminAuthenticationForm


def account_urls(*, password_reset: bool) -> list[URLPattern]:
    """Sign in and out, change a password, manage API tokens; reset a password only where mail is set up."""
    patterns = [
        path("login/", ThrottledLoginView.as_view(), name="login"),
        path("logout/", auth_views.LogoutView.as_view(), name="logout"),
        path("password_change/", auth_views.PasswordChangeView.as_view(), name="password_change"),
        path("password_change/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
        path("tokens/", security_views.tokens_page, name="tokens"),
        path("tokens/new/", security_views.token_create, name="token_create"),
        path("tokens/rotate/", security_views.token_rotate, name="token_rotate"),
        path("tokens/<str:prefix>/revoke/", security_views.token_revoke, name="token_revoke"),
    ]
    if password_reset:
        patterns += [
            path("password_reset/", auth_views.PasswordResetView.as_view(), name="password_reset"),
            path("password_reset/done/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
            path(
                "reset/<uidb64>/<token>/",
                auth_views.PasswordResetConfirmView.as_view(),
                name="password_reset_confirm",
            ),
            path("reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
        ]
    return patterns


urlpatterns = [
    path("", RedirectView.as_view(url="/annotate/", permanent=False)),
    path("accounts/", include(account_urls(password_reset=settings.DUET_PASSWORD_RESET))),
    path("staff/audit/", security_views.audit_page, name="audit"),
    path("admin/", admin.site.urls),
    path("django-rq/", include("django_rq.urls")),
    path("annotate/", include("annotate.urls")),
    path("training/", include("training.urls")),
    path("api/v1/", api.urls),
]
