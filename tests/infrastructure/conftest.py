"""Fixtures of the template tests: the parsed template, read once per session."""

from __future__ import annotations

import pytest

from tests.infrastructure.cfn import Template, load_template


@pytest.fixture(scope="session")
def template() -> Template:
    return Template(load_template())
