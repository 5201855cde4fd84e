"""The one error every compiler stage raises for bad input (a model file, an op, a config)."""


class CompileError(Exception):
    """Bad input to the compiler; str() is one line naming the thing and what is allowed
    (the CLI prints it and exits with status 2, having written nothing)."""
