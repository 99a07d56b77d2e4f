"""The one exception type whose message is shown to the user as a single line."""


class LivefakeError(Exception):
    """A problem the user can act on. ``str(err)`` is one line saying what happened and what to do.

    The command line prints it without a traceback and exits non-zero; the live loop logs it and
    carries on with the next frame where one bad frame is the cause.
    """


class NoFaceError(LivefakeError):
    """An image in which no usable face was found."""
