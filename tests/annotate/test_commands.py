import json
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from annotate.models import ApiToken, Campaign, Comparison, Judgement, Prompt
from tests.annotate.factories import CampaignFactory, UserFactory

pytestmark = pytest.mark.django_db

PAIR = {"prompt": "What is 2+2?", "chosen": "4", "rejected": "5"}


def _run(*args):
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_import_pairs_judged_then_export_roundtrips(write_jsonl, tmp_path):
    path = write_jsonl([PAIR], name="gold.jsonl")
    assert "1 new comparisons, 1 new judgements" in _run("import_pairs", str(path), "--judged")
    _run("export_preferences", str(tmp_path / "out.jsonl"), "--format", "jsonl")
    (row,) = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert (row["prompt"], row["chosen"], row["rejected"]) == ("What is 2+2?", "4", "5")


def test_import_failure_exits_with_the_line_and_writes_nothing(write_jsonl):
    path = write_jsonl([PAIR, '{"prompt": "x", "chosen": "a", "rejected": 7}'])
    with pytest.raises(CommandError, match=r"line 2, field 'rejected'"):
        call_command("import_pairs", str(path))
    assert Comparison.objects.count() == 0


def test_import_prompts_of_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(CommandError, match="no such file"):
        call_command("import_prompts", str(tmp_path / "absent.jsonl"))


def test_import_prompts_reimport_creates_nothing(write_jsonl):
    path = write_jsonl([{"prompt": "Hi?"}])
    _run("import_prompts", str(path))
    assert "0 new prompts" in _run("import_prompts", str(path))
    assert Prompt.objects.count() == 1


def test_export_since_takes_a_date(write_jsonl, tmp_path):
    _run("import_pairs", str(write_jsonl([PAIR])), "--judged")
    out = _run("export_preferences", str(tmp_path / "o.jsonl"), "--since", "2999-01-01")
    assert "wrote 0 preference rows" in out


def test_create_annotator_and_api_token(client):
    _run("create_annotator", "alice", "--password", "s3cret-pass", "--staff")
    token = _run("api_token", "alice").strip().splitlines()[-1]
    assert get_user_model().objects.get(username="alice").is_staff
    assert client.get("/api/v1/comparisons/next", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 204


def test_api_token_for_an_unknown_user_fails():
    with pytest.raises(CommandError, match="no user named 'bob'"):
        call_command("api_token", "bob")


def test_create_annotator_staff_is_not_a_superuser():
    _run("create_annotator", "sam", "--password", "s3cret-pass", "--staff")
    user = get_user_model().objects.get(username="sam")
    assert (user.is_staff, user.is_superuser) == (True, False)


def test_create_annotator_superuser_is_both():
    assert "superuser root is ready" in _run("create_annotator", "root", "--password", "s3cret-pass", "--superuser")
    user = get_user_model().objects.get(username="root")
    assert (user.is_staff, user.is_superuser) == (True, True)


def test_api_token_list_shows_each_tokens_prefix_not_the_token():
    UserFactory(username="alice")
    token = _run("api_token", "alice").strip().splitlines()[-1]
    listing = _run("api_token", "alice", "--list")
    assert listing.startswith(ApiToken.objects.get().prefix)
    assert token not in listing


def test_api_token_revoke_refuses_the_token(client):
    UserFactory(username="alice")
    token = _run("api_token", "alice").strip().splitlines()[-1]
    _run("api_token", "alice", "--revoke", ApiToken.objects.get().prefix)
    assert client.get("/api/v1/comparisons/next", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401


def test_api_token_revoke_of_an_unknown_prefix_fails():
    UserFactory(username="alice")
    with pytest.raises(CommandError, match="no token starting 'nope'"):
        call_command("api_token", "alice", "--revoke", "nope")


def test_api_token_rotate_prints_the_one_token_left(client):
    UserFactory(username="alice")
    old = _run("api_token", "alice").strip().splitlines()[-1]
    new = _run("api_token", "alice", "--rotate").strip().splitlines()[-1]
    assert (ApiToken.objects.count(), ApiToken.objects.get().prefix) == (1, new[:8])
    assert client.get("/api/v1/comparisons/next", HTTP_AUTHORIZATION=f"Bearer {old}").status_code == 401


def test_seed_demo_loads_pairs_and_prints_credentials():
    out = _run("seed_demo")
    assert "user: admin  password: " in out
    assert Comparison.objects.filter(source="demo/pairs.jsonl").count() == 12
    assert Judgement.objects.count() == 0


def test_import_pairs_judged_from_a_second_path_says_it_added_nothing(write_jsonl, tmp_path):
    path = write_jsonl([PAIR], name="gold.jsonl")
    _run("import_pairs", str(path), "--judged")
    copy = tmp_path / "renamed.jsonl"
    copy.write_bytes(path.read_bytes())
    out = _run("import_pairs", str(copy), "--judged")
    assert f"0 new judgements (this file's content was already imported with its judgements, as {path}" in out


def test_import_prompts_of_a_latin1_file_names_the_line_and_column(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes('{"prompt": "Hi"}\n{"prompt": "Café?"}\n'.encode("latin-1"))
    with pytest.raises(CommandError, match=r"latin1.jsonl line 2: not UTF-8 text at column 16 \(byte 0xe9"):
        call_command("import_prompts", str(path))
    assert Prompt.objects.count() == 0


def test_create_campaign_stores_its_options(tmp_path):
    guidelines = tmp_path / "guidelines.md"
    guidelines.write_text("# Be kind\nPrefer the **helpful** answer.", encoding="utf-8")
    out = StringIO()
    call_command(
        "create_campaign", "helpful", "--name", "Helpfulness", "--k", "5", "--question", "Which helps more?",
        "--guidelines", str(guidelines), "--gold-rate", "0.2", "--gold-threshold", "0.8", stdout=out,
    )
    campaign = Campaign.objects.get(slug="helpful")
    assert (campaign.name, campaign.target_judgements, campaign.question, campaign.gold_rate) == (
        "Helpfulness", 5, "Which helps more?", 0.2
    )
    assert (campaign.gold_threshold, campaign.guidelines) == (0.8, guidelines.read_text(encoding="utf-8"))
    assert "helpful created" in out.getvalue()


def test_create_campaign_with_a_bad_value_names_the_field():
    with pytest.raises(CommandError, match="gold_rate"):
        call_command("create_campaign", "helpful", "--gold-rate", "2")
    assert not Campaign.objects.filter(slug="helpful").exists()


def test_create_campaign_for_named_users_that_do_not_exist_names_them():
    with pytest.raises(CommandError, match="ghost"):
        call_command("create_campaign", "helpful", "--access", "users", "--users", "ghost")


@pytest.mark.parametrize("command", ["import_prompts", "import_pairs"])
def test_an_import_into_an_unknown_campaign_is_a_clear_error_naming_it(write_jsonl, command):
    path = write_jsonl([PAIR])
    with pytest.raises(CommandError, match="no campaign with slug 'nope'"):
        call_command(command, str(path), "--campaign", "nope")
    assert not Prompt.objects.exists()


def test_import_pairs_into_a_campaign_puts_the_comparisons_there(write_jsonl):
    campaign = CampaignFactory(slug="helpful", target_judgements=4)
    _run("import_pairs", str(write_jsonl([PAIR])), "--campaign", "helpful")
    assert list(Comparison.objects.values_list("campaign_id", "target_judgements")) == [(campaign.pk, 4)]


def test_import_prompts_into_a_campaign_adds_them_to_it(write_jsonl):
    campaign = CampaignFactory(slug="helpful")
    _run("import_prompts", str(write_jsonl([{"prompt": "Why?"}])), "--campaign", "helpful")
    assert list(campaign.prompts.values_list("messages", flat=True)) == [[{"role": "user", "content": "Why?"}]]


def test_seed_demo_into_a_campaign_puts_the_pairs_there():
    campaign = CampaignFactory(slug="demo-campaign")
    _run("seed_demo", "--campaign", "demo-campaign")
    assert Comparison.objects.exists()
    assert not Comparison.objects.exclude(campaign=campaign).exists()


def test_seed_demo_into_an_unknown_campaign_is_a_clear_error():
    with pytest.raises(CommandError, match="no campaign with slug 'nope'"):
        call_command("seed_demo", "--campaign", "nope")
