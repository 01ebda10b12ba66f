"""Client API keys: made, hashed, checked, and cached for at most `API_KEY_CACHE_S`."""

from __future__ import annotations

from ocr_gateway.core.settings import Settings
from ocr_gateway.db.engine import SessionFactory


class KeyRing:
    """Checks client keys against `api_keys`, remembering each answer for a short while."""

    def __init__(self, settings: Settings, sessions: SessionFactory) -> None:
        self.settings = settings
        self.sessions = sessions

    async def authenticate(self, key: str) -> str | None:
        """The tenant of a valid, unrevoked key; None for any other string."""
        raise NotImplementedError
