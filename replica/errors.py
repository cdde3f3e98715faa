"""Errors a user can act on. The CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """A mistake in input, config or usage (not a bug): shown without a traceback."""
