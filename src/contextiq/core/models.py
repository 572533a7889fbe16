"""Pydantic building blocks shared by the API models of every context."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict

from contextiq.core.scope import scope_problem


def _check_scope(value: dict[str, str]) -> dict[str, str]:
    problem = scope_problem(value)
    if problem:
        raise ValueError(problem)
    return value


ScopeField = Annotated[dict[str, str], AfterValidator(_check_scope)]
"""A scope in an API model: validated to at most five string pairs."""


class ApiModel(BaseModel):
    """Base of request models: unknown fields are an error, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid")


class ResponseModel(BaseModel):
    """Base of response models: built from rows by attribute."""

    model_config = ConfigDict(from_attributes=True)


def dump_json(model: BaseModel) -> dict[str, Any]:
    """Return the JSON-ready dict of a model."""
    return model.model_dump(mode="json")
