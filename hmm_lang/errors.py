"""The one exception type the package raises for bad input.

Its message is a single line that names the problem and the fix; the CLI prints it as
``error: <message>`` and exits with status 2, without a traceback.
"""


class HmmLangError(Exception):
    """Bad input or an impossible request, explained in one line."""
