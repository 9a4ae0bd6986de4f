"""The registration process's runtime: the shared one, plus what registration keeps per process."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.registration.catalog import CatalogCache
from shared.runtime import ServiceRuntime


@dataclass
class RegistrationRuntime(ServiceRuntime):
    # Owned by the runtime rather than the module: two replicas in one process (a test) share neither.
    catalog: CatalogCache = field(default_factory=CatalogCache)
