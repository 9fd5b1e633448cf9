"""Generation rounds and the next round in a campaign: its prompts, its comparisons, its judgements."""

from __future__ import annotations

import pytest

from annotate.services import campaign_prompts_add
from tests.annotate.factories import CampaignFactory, PromptFactory
from training import selectors, services
from training.models import GenerationRun, ModelVersion, RunStatus, TrainingRun

# Starting a run checks Redis and enqueues: on a Redis database of this test process.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("private_queues")]


@pytest.fixture
def version():
    parent = ModelVersion.objects.create(name="parent", path="/models/parent")
    return ModelVersion.objects.create(name="child", path="/models/child", parent=parent)


def test_a_round_remembers_its_campaign(version):
    campaign = CampaignFactory()
    run = services.generation_run_start(model_version=version, campaign=campaign)
    run.refresh_from_db()
    assert run.campaign == campaign


def test_a_campaigns_round_answers_only_the_campaigns_prompts(version):
    campaign = CampaignFactory()
    mine = PromptFactory()
    PromptFactory()
    campaign_prompts_add(campaign=campaign, prompt_ids=[mine.pk])
    run = GenerationRun(model_version=version, prompts=GenerationRun.Prompts.ALL, campaign=campaign)
    assert selectors.generation_prompts(run=run) == [mine]


def test_a_round_without_a_campaign_answers_every_prompt(version):
    campaign_prompts_add(campaign=CampaignFactory(), prompt_ids=[PromptFactory().pk])
    PromptFactory()
    run = GenerationRun(model_version=version, prompts=GenerationRun.Prompts.ALL)
    assert len(selectors.generation_prompts(run=run)) == 2


def test_next_round_trains_on_the_campaigns_judgements_and_generates_into_it(version):
    campaign = CampaignFactory(slug="helpful")
    train_run, gen_run = services.next_round_start(base_version=version, campaign=campaign)
    assert train_run.dataset_filters["campaign"] == "helpful"
    assert gen_run.campaign == campaign


def test_next_round_of_a_campaign_counts_since_that_campaigns_last_run(version):
    campaign = CampaignFactory(slug="helpful")
    mine = TrainingRun.objects.create(
        base_version=version, status=RunStatus.SUCCEEDED, dataset_filters={"campaign": "helpful"}
    )
    TrainingRun.objects.create(base_version=version, status=RunStatus.SUCCEEDED, dataset_filters={"campaign": "other"})
    train_run, _ = services.next_round_start(base_version=version, campaign=campaign)
    assert train_run.dataset_filters["since"] == mine.created_at.isoformat()


def test_a_held_back_round_started_anyway_keeps_the_campaign_of_the_runs_data(version):
    campaign = CampaignFactory(slug="helpful")
    run = TrainingRun.objects.create(
        base_version=version, status=RunStatus.SUCCEEDED, learned=False, dataset_filters={"campaign": "helpful"}
    )
    trained = ModelVersion.objects.create(name="grandchild", path="/models/gc", parent=version, trained_by=run)
    started = services.generation_run_start_anyway(run=run)
    assert (started.model_version, started.campaign) == (trained, campaign)
