from django.urls import path

from annotate import adjudication_views, campaign_views, flag_views, views

app_name = "annotate"
urlpatterns = [
    path("", views.annotate_page, name="page"),
    path("judge/", views.judge, name="judge"),
    path("skip/", views.skip, name="skip"),
    path("undo/", views.undo, name="undo"),
    path("campaigns/", views.campaigns_page, name="campaigns"),
    path("c/<slug:slug>/", views.campaign_page, name="campaign"),
    path("c/<slug:slug>/guidelines/", views.guidelines_seen, name="campaign_guidelines"),
    path("import/", views.import_page, name="import"),
    path("export/", views.export_page, name="export"),
    path("exports/<int:job_id>/", views.export_job_page, name="export_job"),
    path("exports/<int:job_id>/download/", views.export_job_download, name="export_job_download"),
    path("stats/", views.stats_page, name="stats"),
    path("adjudicate/", adjudication_views.adjudication_list, name="adjudicate"),
    path(
        "adjudicate/<int:comparison_id>/", adjudication_views.adjudication_decide, name="adjudicate_decide"
    ),
    path("campaigns/manage/", campaign_views.campaign_admin, name="campaign_admin"),
    path("campaigns/manage/new/", campaign_views.campaign_new, name="campaign_new"),
    path("campaigns/manage/<slug:slug>/edit/", campaign_views.campaign_edit, name="campaign_edit"),
    path("campaigns/manage/<slug:slug>/status/", campaign_views.campaign_status, name="campaign_status"),
    path("flags/<int:flag_id>/unflag/", flag_views.unflag, name="unflag"),
]
