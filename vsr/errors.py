"""The one exception type users see: its message is a single line, shown by the CLI as ``Error: <message>``."""


class VsrError(Exception):
    """A failure the user can act on (bad input, missing weights, unsupported option). Never a bug."""
