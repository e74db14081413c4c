"""The project's base error: a problem a user can fix, whose message says what to do.

Every library error meant for people (a bad configuration, a missing run, a damaged
file, a refused review) derives from `UserError`, so the command line and the app
catch one class and show its message as it is; anything else is a bug.
"""


class UserError(Exception):
    """A problem with the user's input, files or setup; `str(exc)` says what to do next."""
