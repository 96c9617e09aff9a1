"""Errors that describe a user mistake (bad flag, bad file, bad value).

The CLI prints them as one line and exits with status 2, never with a traceback. Library code
raises `UserError` whenever the cause is the caller's input, with a message that names the
problem and says what to do instead.
"""


class UserError(ValueError):
    """Bad input from the user: the message names the flag/file and the fix."""


class OutDirMismatch(UserError):
    """An output directory holds the work of other settings; `keys` names those that differ
    (callers such as `tokenbound run` reword the advice without parsing the message)."""

    def __init__(self, message: str, keys: list[str]):
        super().__init__(message)
        self.keys = list(keys)
