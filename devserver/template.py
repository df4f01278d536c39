"""Reading template.yaml the way CloudFormation does: short-form tags (``!Ref``, ``!GetAtt``, ``!Sub`` …) become
their long forms (``{"Ref": …}``, ``{"Fn::GetAtt": [resource, attribute]}``), so readers see one shape only.

Used by the devserver (its route table is the template's) and by the template tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import yaml

TEMPLATE_PATH = Path(__file__).resolve().parents[1] / "template.yaml"


class CfnLoader(yaml.SafeLoader):
    """SafeLoader that also reads CloudFormation's short-form intrinsic functions."""


def _construct_intrinsic(loader: CfnLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(cast("yaml.MappingNode", node), deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        resource, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [resource, attribute]}
    return {f"Fn::{tag_suffix}": value}


CfnLoader.add_multi_constructor("!", _construct_intrinsic)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        return yaml.load(handle, Loader=CfnLoader)  # noqa: S506 - a SafeLoader subclass
