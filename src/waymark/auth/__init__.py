"""Who is asking: credentials (API keys, OpenID Connect tokens) turned into a
:class:`~waymark.auth.grants.Principal`, and what that principal may do."""
