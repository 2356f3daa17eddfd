"""The API's OpenAPI naming and annotations (drf-spectacular, the ``api-docs`` extra).

Every name the API puts in a site's schema is ours alone, whatever the site's
``SPECTACULAR_SETTINGS``: components start with ``VerificationSession``, operation ids with
``verification_link_``, every operation carries the tag ``verification-link``. Without
drf-spectacular the decorators are no-ops: the API itself does not depend on it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from rest_framework import serializers
from rest_framework.schemas.inspectors import DefaultSchema
from rest_framework.settings import api_settings

try:
    from drf_spectacular.extensions import OpenApiSerializerFieldExtension
    from drf_spectacular.openapi import AutoSchema
    from drf_spectacular.plumbing import build_choice_field, is_jsonschema_compliant
    from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
except ImportError:  # pragma: no cover - exercised in sites without drf-spectacular
    AutoSchema = OpenApiSerializerFieldExtension = None  # type: ignore[assignment,misc]
    OpenApiParameter = OpenApiResponse = None  # type: ignore[assignment,misc]

    def extend_schema(*args: Any, **kwargs: Any) -> Callable[[Any], Any]:  # type: ignore[misc]
        return lambda target: target

    def extend_schema_view(**kwargs: Any) -> Callable[[Any], Any]:  # type: ignore[misc]
        return lambda target: target


#: The tag of every operation of the API.
TAG = "verification-link"
#: What every component name of the API starts with.
COMPONENT_PREFIX = "VerificationSession"
#: What every operation id of the API starts with.
OPERATION_PREFIX = "verification_link_"


def operation(name: str, **kwargs: Any) -> Callable[[Any], Any]:
    """``extend_schema`` with our operation id (``verification_link_<name>``) and tag: explicit,
    so neither depends on where the site includes our URLs."""
    return extend_schema(operation_id=f"{OPERATION_PREFIX}{name}", tags=[TAG], **kwargs)


class EnumChoiceField(serializers.ChoiceField):
    """A ``ChoiceField`` whose choices are the named schema component ``component_name``.

    drf-spectacular names a field's enum after the field (``status`` → ``StatusEnum``), renamed only
    through the site's ``ENUM_NAME_OVERRIDES``; a field of this class carries its own name instead.
    """

    def __init__(self, *args: Any, component_name: str, **kwargs: Any) -> None:
        if not component_name.startswith(COMPONENT_PREFIX):
            raise ValueError(f"component names of the API start with {COMPONENT_PREFIX}: {component_name!r}")
        self.component_name = component_name
        super().__init__(*args, **kwargs)


if OpenApiSerializerFieldExtension is not None:

    class EnumChoiceFieldExtension(OpenApiSerializerFieldExtension):
        """The enum of an ``EnumChoiceField`` as the component it names (registered on import)."""

        target_class = EnumChoiceField
        match_subclasses = True

        def get_name(self) -> str | None:
            return self.target.component_name

        def map_serializer_field(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
            schema = build_choice_field(self.target)
            # The id only helps drf-spectacular's enum hook pair up choice sets; a named
            # component never goes through that hook.
            schema.pop("x-spec-enum-id", None)
            if self.target.allow_null:
                # Null belongs to the component itself: OpenAPI 3.0 ignores ``nullable`` beside a $ref.
                if is_jsonschema_compliant():
                    schema["type"] = [schema["type"], "null"] if "type" in schema else "null"
                else:
                    schema["nullable"] = True
            return schema


def _page_name(self: Any, serializer_name: str) -> str:
    return f"{serializer_name}Page"


@cache
def _prefixed(schema_class: type) -> type:
    """The site's schema class, naming our list's page component ``VerificationSessionPage``
    (drf-spectacular's ``Paginated…List`` would start with its own word, not ours)."""
    return type(f"VerificationLink{schema_class.__name__}", (schema_class,), {"get_paginated_name": _page_name})


class VerificationLinkSchema(DefaultSchema):
    """DRF's ``DefaultSchema``: the site's ``DEFAULT_SCHEMA_CLASS``, read on each use, so the site's
    own schema customisations apply to our views too; when it is drf-spectacular's, with our name
    for the list's page."""

    def __get__(self, instance: Any, owner: Any) -> Any:
        if instance in self.instance_schemas:  # set on the view, as drf-spectacular does per action
            return self.instance_schemas[instance]
        inspector_class = api_settings.DEFAULT_SCHEMA_CLASS
        if AutoSchema is None or not (isinstance(inspector_class, type) and issubclass(inspector_class, AutoSchema)):
            return super().__get__(instance, owner)
        inspector = _prefixed(inspector_class)()
        inspector.view = instance
        return inspector


__all__ = [
    "COMPONENT_PREFIX",
    "OPERATION_PREFIX",
    "TAG",
    "EnumChoiceField",
    "OpenApiParameter",
    "OpenApiResponse",
    "VerificationLinkSchema",
    "extend_schema",
    "extend_schema_view",
    "operation",
]
