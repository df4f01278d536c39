"""Reading template.yaml the way CloudFormation does, for the template tests.

The loader turns the short tags (``!Ref``, ``!GetAtt``, ``!Sub`` …) into their long forms, so the tests look at
one shape only. The helpers answer the questions the tests ask (which routes, which IAM statements reach a
function's role) over the SAM source, without running the SAM translator: that one lives in ``.venv-sam``,
and ``make validate`` is the check that the translator accepts the template.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
NO_VALUE = {"Ref": "AWS::NoValue"}


def branches(value: Any) -> Iterator[Any]:
    """Every value ``value`` can take, looking through ``Fn::If`` and dropping ``AWS::NoValue``."""
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        _, when_true, when_false = value["Fn::If"]
        yield from branches(when_true)
        yield from branches(when_false)
    elif value != NO_VALUE:
        yield value


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    function: str
    authorizer: str | None
    """None means the API's default authorizer; "NONE" means no authorizer at all."""


@dataclass(frozen=True, slots=True)
class Statement:
    """One IAM statement as a role receives it, with where it came from for failure messages."""

    source: str
    effect: str
    actions: frozenset[str]
    resources: tuple[Any, ...]
    condition: dict[str, Any]

    def grants(self, action: str) -> bool:
        return self.effect == "Allow" and any(_matches(pattern, action) for pattern in self.actions)


def _matches(pattern: str, action: str) -> bool:
    pattern, action = pattern.lower(), action.lower()
    if pattern.endswith("*"):
        return action.startswith(pattern[:-1])
    return pattern == action


class Template:
    """The parsed template with the few views the tests need."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.resources: dict[str, dict[str, Any]] = document["Resources"]
        self.parameters: dict[str, dict[str, Any]] = document["Parameters"]
        self.globals: dict[str, Any] = document.get("Globals", {}).get("Function", {})

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {name: res for name, res in self.resources.items() if res["Type"] == kind}

    @property
    def functions(self) -> dict[str, dict[str, Any]]:
        return self.of_type("AWS::Serverless::Function")

    def function_property(self, function: str, name: str) -> Any:
        """A function's property as deployed: its own value, else the Globals value."""
        properties = self.functions[function]["Properties"]
        return properties.get(name, self.globals.get(name))

    def environment(self, function: str) -> dict[str, Any]:
        merged = dict(self.globals.get("Environment", {}).get("Variables", {}))
        merged.update(self.functions[function]["Properties"].get("Environment", {}).get("Variables", {}))
        return merged

    def routes(self) -> list[Route]:
        found = []
        for name, function in self.functions.items():
            for event in function["Properties"].get("Events", {}).values():
                if event["Type"] != "HttpApi":
                    continue
                props = event["Properties"]
                authorizer = props.get("Auth", {}).get("Authorizer")
                found.append(Route(props["Method"].upper(), props["Path"], name, authorizer))
        return found

    def role_statements(self, function: str) -> list[Statement]:
        """Every IAM statement that reaches the function's SAM-generated role, inline or attached."""
        role = f"{function}Role"
        found = self._inline_statements(function)
        for name, resource in self.of_type("AWS::IAM::Policy").items():
            roles = [ref for entry in resource["Properties"]["Roles"] for ref in branches(entry)]
            if {"Ref": role} in roles:
                found.extend(_statements(name, resource["Properties"]["PolicyDocument"]))
        return found

    def _inline_statements(self, function: str) -> list[Statement]:
        found: list[Statement] = []
        for policy in self.functions[function]["Properties"].get("Policies", []):
            for branch in branches(policy):
                if isinstance(branch, dict) and "Statement" in branch:
                    found.extend(_statements(f"{function}.Policies", branch))
        return found

    def policy_template_names(self, function: str) -> set[str]:
        """SAM policy templates (``SQSSendMessagePolicy: …``) a function uses."""
        names: set[str] = set()
        for policy in self.functions[function]["Properties"].get("Policies", []):
            for branch in branches(policy):
                if isinstance(branch, dict) and "Statement" not in branch:
                    names.update(branch)
                elif isinstance(branch, str):
                    names.add(branch)
        return names

    def iam_statements(self) -> list[Statement]:
        """Every IAM statement in the template: functions' inline policies and AWS::IAM::Policy resources."""
        found = [statement for function in self.functions for statement in self._inline_statements(function)]
        for name, resource in self.of_type("AWS::IAM::Policy").items():
            found.extend(_statements(name, resource["Properties"]["PolicyDocument"]))
        for name, resource in self.of_type("AWS::IAM::Role").items():
            for policy in resource["Properties"].get("Policies", []):
                found.extend(_statements(name, policy["PolicyDocument"]))
        return found


def _statements(source: str, document: dict[str, Any]) -> list[Statement]:
    statements = []
    for raw in as_list(document["Statement"]):
        for statement in branches(raw):
            statements.append(
                Statement(
                    source=source,
                    effect=statement["Effect"],
                    actions=frozenset(as_list(statement["Action"])),
                    resources=tuple(r for entry in as_list(statement["Resource"]) for r in branches(entry)),
                    condition=statement.get("Condition", {}),
                )
            )
    return statements
