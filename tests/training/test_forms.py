import pytest

from training.forms import GenerationRunForm
from training.models import ModelVersion
from training.services.control import MAX_PROMPTS_MAX

pytestmark = pytest.mark.django_db


@pytest.fixture
def version() -> ModelVersion:
    return ModelVersion.objects.create(name="tiny-base", path="/models/tiny-base")


def test_a_round_limited_beyond_the_column_is_refused(version):
    data = {"prompts": "all", "pairing": "self", "n": "2", "temperature": "0.7", "top_p": "0.95",
            "max_new_tokens": "8", "seed": "0", "max_prompts": str(MAX_PROMPTS_MAX + 1)}
    form = GenerationRunForm(data, version=version)
    assert not form.is_valid()
    assert "max_prompts" in form.errors
