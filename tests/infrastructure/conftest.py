"""Fixtures of the template tests: the parsed template, read once per session."""

from __future__ import annotations

import pytest

from devserver.template import load_template
from tests.infrastructure.cfn import Template


@pytest.fixture(scope="session")
def template() -> Template:
    return Template(load_template())
