"""A grid run's claim: the ``claim.json`` in its folder (utils/claims.py says how claims work)."""

from __future__ import annotations

from pathlib import Path

from ..utils.claims import HEARTBEAT_S, STALE_AFTER_S, FolderClaim, new_token

__all__ = ["CLAIM_FILE", "RunClaim", "new_token"]

CLAIM_FILE = "claim.json"


class RunClaim(FolderClaim):
    """The exclusive right to train one grid run in ``folder`` (``FolderClaim`` on its ``claim.json``).

    Args:
        folder: the run's folder (created if missing).
        token: who claims: equal tokens are one holder (a retried Ray task).
        heartbeat: seconds between touches of the claim file while it is held.
        stale_after: seconds without a touch after which another machine's claim is taken over.
    """

    def __init__(self, folder, token: str, *, heartbeat: float = HEARTBEAT_S, stale_after: float = STALE_AFTER_S):
        super().__init__(Path(folder) / CLAIM_FILE, token, heartbeat=heartbeat, stale_after=stale_after)
