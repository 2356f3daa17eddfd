"""How the API's list is paginated: the site's ``DEFAULT_PAGINATION_CLASS`` and ``PAGE_SIZE``.

Read on each request (``override_settings`` works), with four adjustments that keep the list
bounded and its answers inside the schema:

- no site class: page numbers (``SessionPagination``), the list was always paginated;
- no page size: ``FALLBACK_PAGE_SIZE``, never the whole table (staff may list every session);
- no cap on a page size the client asks for (``?limit=``, or the site's ``page_size_query_param``):
  ``MAX_PAGE_SIZE`` (or the default page size when larger); a site class's own
  ``max_limit``/``max_page_size`` wins;
- page numbers must be whole numbers when given (an empty ``page`` is not page 1), and a cursor
  pagination orders by ``-created_at`` (its default ``-created`` is not a field of ours).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from rest_framework.exceptions import NotFound
from rest_framework.pagination import (
    BasePagination,
    CursorPagination,
    LimitOffsetPagination,
    PageNumberPagination,
)
from rest_framework.request import Request
from rest_framework.settings import api_settings

#: The page size when neither the site's class nor ``PAGE_SIZE`` names one.
FALLBACK_PAGE_SIZE = 20
#: The largest page a client may ask for when the site's class sets no ``max_limit`` /
#: ``max_page_size`` (a default page size above it is the cap instead).
MAX_PAGE_SIZE = 100


def _live_page_size(cls: type, attribute: str) -> int:
    """The page size of ``cls``: its own when a class of the site set one; else ``PAGE_SIZE`` as
    it is now (DRF's classes copy it once, at import) or ``FALLBACK_PAGE_SIZE``."""
    for klass in cls.__mro__:
        if klass.__module__.startswith(("rest_framework.", __name__)):
            break
        if attribute in vars(klass) and vars(klass)[attribute]:
            return int(vars(klass)[attribute])
    return api_settings.PAGE_SIZE or FALLBACK_PAGE_SIZE


def _live_cap(cls: type, attribute: str, page_size: int) -> int:
    """The largest page a client may ask for: the site class's own ``attribute`` when set, else
    ``MAX_PAGE_SIZE`` — never below the default ``page_size`` (asking would give less than not)."""
    own = getattr(cls, attribute, None)
    return int(own) if own else max(MAX_PAGE_SIZE, page_size)


class StrictPageNumbers:
    """``page`` must be a whole number when given."""

    page_query_param: str

    def get_page_number(self, request: Request, paginator: Any) -> Any:
        raw = request.query_params.get(self.page_query_param)
        if raw is not None and not raw.isdigit():
            raise NotFound("Invalid page.")
        return super().get_page_number(request, paginator)  # type: ignore[misc]


class LivePageSize:
    """``page_size`` after ``_live_page_size`` of ``site_class``, ``max_page_size`` after ``_live_cap``."""

    site_class: type
    page_size: int | None
    max_page_size: int | None

    def get_page_size(self, request: Request) -> int | None:
        self.page_size = _live_page_size(self.site_class, "page_size")
        self.max_page_size = _live_cap(self.site_class, "max_page_size", self.page_size)
        return super().get_page_size(request)  # type: ignore[misc]


class LiveDefaultLimit:
    """``default_limit`` after ``_live_page_size`` of ``site_class``, ``max_limit`` after ``_live_cap``."""

    site_class: type
    default_limit: int | None
    max_limit: int | None

    def get_limit(self, request: Request) -> int | None:
        self.default_limit = _live_page_size(self.site_class, "default_limit")
        self.max_limit = _live_cap(self.site_class, "max_limit", self.default_limit)
        return super().get_limit(request)  # type: ignore[misc]


class SessionPagination(StrictPageNumbers, LivePageSize, PageNumberPagination):
    """Page numbers, when the site has no pagination class of its own."""

    site_class = PageNumberPagination
    page_size = FALLBACK_PAGE_SIZE


@cache
def adapted(site_class: type[BasePagination]) -> type[BasePagination]:
    """``site_class`` with the adjustments above (the class itself when none applies)."""
    attrs: dict[str, Any] = {"__module__": __name__, "__doc__": site_class.__doc__, "site_class": site_class}
    mixins: tuple[type, ...]
    if issubclass(site_class, PageNumberPagination):
        mixins = (StrictPageNumbers, LivePageSize)
    elif issubclass(site_class, LimitOffsetPagination):
        mixins = (LiveDefaultLimit,)
    elif issubclass(site_class, CursorPagination):
        mixins = (LivePageSize,)
        attrs["ordering"] = "-created_at"
    else:
        return site_class
    return type(f"VerificationLink{site_class.__name__}", (*mixins, site_class), attrs)


def site_pagination_class() -> type[BasePagination]:
    """The pagination class of the API's list, after the site's settings as they are now."""
    site_class = api_settings.DEFAULT_PAGINATION_CLASS
    return SessionPagination if site_class is None else adapted(site_class)


class SitePaginationClass:
    """A class attribute resolving to ``site_pagination_class()`` on each read (DRF and
    drf-spectacular both read a view's ``pagination_class``)."""

    def __get__(self, instance: Any, owner: Any) -> type[BasePagination]:
        return site_pagination_class()


__all__ = [
    "FALLBACK_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "SessionPagination",
    "SitePaginationClass",
    "adapted",
    "site_pagination_class",
]
