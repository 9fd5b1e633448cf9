"""Model versions know their lineage."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from training.models import ModelVersion

pytestmark = pytest.mark.django_db


def _line(*names: str) -> list[ModelVersion]:
    made: list[ModelVersion] = []
    for name in names:
        made.append(ModelVersion.objects.create(name=name, path=name, parent=made[-1] if made else None))
    return made


def test_ancestors_run_from_the_parent_to_the_root():
    root, child, grandchild = _line("root", "child", "grandchild")
    assert grandchild.ancestors() == [child, root]
    assert root.ancestors() == []


def test_depth_counts_the_versions_of_the_lineage():
    versions = _line("a", "b", "c")
    assert [v.depth for v in versions] == [1, 2, 3]


def test_the_whole_lineage_costs_one_query():
    *_, last = _line("a", "b", "c", "d", "e")
    with CaptureQueriesContext(connection) as queries:
        last.ancestors()
    assert len(queries) == 1
