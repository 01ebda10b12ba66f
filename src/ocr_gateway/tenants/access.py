"""Who is calling a client route, and which tenant's jobs the call may touch."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ocr_gateway.core.errors import InvalidField
from ocr_gateway.db.models import DEFAULT_TENANT, TENANT_NAME_PATTERN

_TENANT_NAME = re.compile(TENANT_NAME_PATTERN)


def check_tenant_name(name: str) -> str:
    """The name itself, or 422: at most 64 characters of `[A-Za-z0-9._-]`."""
    if not _TENANT_NAME.fullmatch(name):
        raise InvalidField(
            "a tenant name is 1 to 64 characters of letters, digits, '.', '_' and '-'"
        )
    return name


@dataclass(frozen=True, slots=True)
class Caller:
    """The tenant a client route acts for. The operator's key without an `X-Tenant-Id` acts
    for `default` when it creates jobs, and reads every tenant's (`scope` None)."""

    tenant: str = DEFAULT_TENANT
    sees_all: bool = False

    @property
    def scope(self) -> str | None:
        """The tenant that reads are limited to; None for the operator, who sees every one."""
        return None if self.sees_all else self.tenant
