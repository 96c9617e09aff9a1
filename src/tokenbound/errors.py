"""Errors that describe a user mistake (bad flag, bad file, bad value).

The CLI prints them as one line and exits with status 2, never with a traceback. Library code
raises `UserError` whenever the cause is the caller's input, with a message that names the
problem and says what to do instead.
"""


class UserError(ValueError):
    """Bad input from the user: the message names the flag/file and the fix."""
