"""The one exception type the CLI turns into a one-line message."""


class KagglePlanetError(Exception):
    """Bad input or a failed step, worded for the user.

    The message is a single line naming the file, row or key at fault and what was expected;
    `kaggle-planet` prints it as ``error: <message>`` and exits with status 2.
    """
