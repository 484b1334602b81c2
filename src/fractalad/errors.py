"""Exceptions for bad user input: each message names the file or value, what is wrong and what to do."""


class InputError(ValueError):
    """Invalid user input (a file, a folder layout, a parameter); the CLI prints it without a traceback."""


class OutputError(InputError):
    """An output location that cannot be written (a file in the way, no permission, a full disk)."""
