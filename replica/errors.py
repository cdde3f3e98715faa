"""Errors a user can act on. The CLI prints them as one line and exits with code 2."""

import sys
from collections.abc import Callable


class UserError(Exception):
    """A mistake in input, config or usage (not a bug): shown without a traceback."""


def exit_on_user_error(main: Callable[[], None]) -> None:
    """Run a script's `main`; a UserError (a missing adapter, a bad --set) is one line on stderr
    and exit code 2, as `replica` shows it, not a traceback."""
    try:
        main()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
