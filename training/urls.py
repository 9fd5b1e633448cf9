from django.urls import path

from training import views

app_name = "training"
urlpatterns = [
    path("", views.runs_page, name="runs"),
    path("runs/new/", views.training_run_new, name="run_new"),
    path("runs/new/preview/", views.training_run_preview, name="run_preview"),
    path("runs/<int:run_id>/", views.training_run_page, name="run"),
    path("runs/<int:run_id>/dataset.jsonl", views.training_run_file, {"which": "dataset"}, name="run_dataset"),
    path("runs/<int:run_id>/heldout.jsonl", views.training_run_file, {"which": "heldout"}, name="run_heldout"),
    path("runs/<int:run_id>/live/", views.training_run_live, name="run_live"),
    path("runs/<int:run_id>/cancel/", views.training_run_cancel, name="run_cancel"),
    path("runs/<int:run_id>/resume/", views.training_run_resume, name="run_resume"),
    path("runs/<int:run_id>/generate-anyway/", views.training_run_generate_anyway, name="run_generate_anyway"),
    path("generations/<int:run_id>/", views.generation_run_page, name="generation"),
    path("generations/<int:run_id>/live/", views.generation_run_live, name="generation_live"),
    path("generations/<int:run_id>/cancel/", views.generation_run_cancel, name="generation_cancel"),
    path("generations/<int:run_id>/resume/", views.generation_run_resume, name="generation_resume"),
    path("models/", views.versions_page, name="versions"),
    path("models/<int:version_id>/", views.version_page, name="version"),
    path("models/<int:version_id>/download/", views.version_download, name="version_download"),
    path("models/<int:version_id>/next-round/", views.version_next_round, name="version_next_round"),
    path(
        "models/<int:version_id>/evaluation-round/", views.version_evaluation_round, name="version_evaluation_round"
    ),
    path("leaderboard/", views.leaderboard_page, name="leaderboard"),
]
