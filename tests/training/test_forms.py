import pytest

from training.forms import GenerationRunForm, TrainingRunForm, train_config_defaults
from training.models import ModelVersion
from training.services.control import MAX_PROMPTS_MAX

pytestmark = pytest.mark.django_db


@pytest.fixture
def version() -> ModelVersion:
    return ModelVersion.objects.create(name="tiny-base", path="/models/tiny-base")


def _training_form(version: ModelVersion, **changes: object) -> TrainingRunForm:
    data = {name: "" if value is None else value for name, value in train_config_defaults().items()}
    data.update({"base_version": version.pk, "min_agreement": "0", **changes})
    return TrainingRunForm(data)


def test_the_defaults_are_valid(version):
    assert _training_form(version).is_valid()


def test_a_rate_of_zero_is_an_error_on_the_rate_field(version):
    form = _training_form(version, lr="0")
    assert not form.is_valid()
    assert "lr must be greater than 0" in form.errors["lr"][0]


def test_a_prompt_length_not_below_the_length_is_an_error_on_its_field(version):
    form = _training_form(version, max_length="256", max_prompt_length="256")
    assert not form.is_valid()
    assert "max_prompt_length" in form.errors


def test_a_round_limited_beyond_the_column_is_refused(version):
    data = {"prompts": "all", "pairing": "self", "n": "2", "temperature": "0.7", "top_p": "0.95",
            "max_new_tokens": "8", "seed": "0", "max_prompts": str(MAX_PROMPTS_MAX + 1)}
    form = GenerationRunForm(data, version=version)
    assert not form.is_valid()
    assert "max_prompts" in form.errors
