"""Dagster config classes derived from the steps' settings dataclasses, so that a step's
defaults live in one place (its settings) and the UI's launchpad shows the same fields."""

from __future__ import annotations

import dataclasses
import typing

import pydantic
from dagster import Config


class StepConfig(Config):
    """Base of the derived config classes: ``to_settings()`` gives the step's settings."""

    def to_settings(self):
        settings_type = type(self).__settings_type__
        values = self.model_dump()
        for field in dataclasses.fields(settings_type):  # lists back to the settings' tuples
            if isinstance(values.get(field.name), list):
                values[field.name] = tuple(values[field.name])
        return settings_type(**values)


def config_for(settings_type: type, exclude: tuple[str, ...] = ()) -> type[StepConfig]:
    """A Dagster ``Config`` with the fields, types and defaults of ``settings_type`` (but
    ``exclude``: settings the deployment, not a run, decides)."""
    hints = typing.get_type_hints(settings_type)
    fields = {}
    for field in dataclasses.fields(settings_type):
        if field.name in exclude:
            continue
        annotation, default = hints[field.name], field.default
        if typing.get_origin(annotation) is tuple:  # Dagster config knows lists, not tuples
            annotation, default = list[typing.get_args(annotation)[0]], list(default)
        fields[field.name] = (annotation, pydantic.Field(default=default))
    name = settings_type.__name__.removesuffix("Settings") + "Config"
    config_type = pydantic.create_model(name, __base__=StepConfig, __module__=__name__, **fields)
    config_type.__settings_type__ = settings_type
    return config_type
