"""The one exception type that means "the user's input is wrong"."""


class PolicykdError(Exception):
    """Bad input or an unrecoverable run condition.

    The CLI prints the message on one line and exits with status 2, before any env
    is stepped where the check allows it.
    """
