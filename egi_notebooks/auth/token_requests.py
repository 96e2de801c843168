"""Who asked for a user's API token, kept in the token's note, where the hub stores it.

JupyterHub lets others mint API tokens owned by a user (``POST /hub/api/users/<name>/tokens``
by an admin, by a service with the ``tokens`` scope) but records the requester only in the
default note ("Requested via api by user <name>"): a requester who sends a note of their own
leaves no trace. Such a token outlives the requester's rights (an admin demoted at Check-in
keeps it). The handler here takes that URL before JupyterHub's (the authenticator's handlers
come first) and always writes the requester into the note; a token minted by a token that
carries the mark carries it too. The hub's access-token endpoint then refuses marked tokens:
a user's access token goes to the user's own tokens and servers only.
tests/unit/test_upstream_contract.py fails when JupyterHub's handler changes what this relies
on.
"""

from __future__ import annotations

import re
from typing import Any

from jupyterhub.apihandlers.users import UserTokenListAPIHandler

TOKENS_PATH = r"/api/users/([^/]+)/tokens"
# JupyterHub's own wording of the default note of such a token; the mark ends the note
MINTED_BY = re.compile(r"Requested via api by (?:user|service) .+")
NOTE_MAX_LENGTH = 1023  # orm.APIToken.note


def minted_by_another(note: Any) -> str | None:
    """The requester recorded in a token's note ("Requested via api by user <name>") when
    someone other than its owner minted it; ``None`` for the owner's own tokens."""
    match = MINTED_BY.search(note) if isinstance(note, str) else None
    return match.group(0) if match else None


def marked_note(note: Any, mark: str) -> str:
    """``note`` with ``mark`` at its end, shortened to fit the database column."""
    if not isinstance(note, str) or not note:
        return mark
    if mark in note:
        return note
    room = NOTE_MAX_LENGTH - len(mark) - 2
    return f"{note[:room]}; {mark}"


class RecordingUserTokenListAPIHandler(UserTokenListAPIHandler):
    """JupyterHub's token list and creation, with the requester always in the note."""

    def requested_by_another(self) -> str | None:
        """The mark for the token being made, ``None`` when its owner asks for it."""
        requester = self.current_user
        if requester is None:
            # JupyterHub then authenticates the request body (EGICheckinAuthenticator
            # refuses that: 403); nothing is minted
            return None
        owner = self.path_args[0] if self.path_args else None
        kind = getattr(requester, "kind", None)
        if kind != "user" or requester.name != owner:
            return f"Requested via api by {kind} {requester.name}"
        # the owner, through a token someone else minted for them: the mark carries over
        orm_token = self.get_token()
        return minted_by_another(orm_token.note) if orm_token is not None else None

    def get_json_body(self) -> Any:
        body = super().get_json_body()
        if self.request.method != "POST" or not isinstance(body or {}, dict):
            return body  # JupyterHub refuses a body that is not a dict
        mark = self.requested_by_another()
        if mark is None:
            return body
        body = dict(body or {})
        body["note"] = marked_note(body.get("note"), mark)
        return body
