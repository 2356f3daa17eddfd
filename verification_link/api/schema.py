"""OpenAPI annotations through drf-spectacular when it is installed (the ``api-docs`` extra), and
no-ops when it is not: the API itself does not depend on it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

try:
    from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
except ImportError:  # pragma: no cover - exercised in sites without drf-spectacular
    OpenApiParameter = OpenApiResponse = None  # type: ignore[assignment,misc]

    def extend_schema(*args: Any, **kwargs: Any) -> Callable[[Any], Any]:  # type: ignore[no-redef]
        return lambda target: target

    def extend_schema_view(**kwargs: Any) -> Callable[[Any], Any]:  # type: ignore[no-redef]
        return lambda target: target


__all__ = ["OpenApiParameter", "OpenApiResponse", "extend_schema", "extend_schema_view"]
