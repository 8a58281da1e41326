"""The error users see: something they gave (a configuration, data, a file, a run folder) is not as
mira needs it. The CLI prints its one-line message and exits with status 2; any other exception is a bug
and keeps its traceback."""


class MiraError(ValueError):
    """Bad input: the message says what, where and what was expected."""
