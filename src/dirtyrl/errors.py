"""The one exception type that means "the user asked for something we cannot do".

The CLI prints its message as a single line and exits with status 2; anything else that
escapes is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input: unknown env, bad number, missing or mismatched checkpoint, wrong action space."""
