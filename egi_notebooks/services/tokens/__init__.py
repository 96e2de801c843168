"""The tokens service: a notebook's current access token, for the notebook's owner only."""

# A user's own API token with this scope may fetch the user's access token (server tokens
# of the user's own servers may always).
TOKEN_SCOPE = "custom:egi-notebooks:token"
TOKEN_SCOPE_DESCRIPTION = "Fetch your own current access token from the tokens service."
