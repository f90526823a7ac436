"""The one exception type that the CLI turns into a one-line message and exit code 1."""


class TrellicError(Exception):
    """A user-facing error: bad input, corrupt bitstream, missing file, bad option value."""
