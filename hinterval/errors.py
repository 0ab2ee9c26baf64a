"""User-facing errors: the CLI prints these as one line and exits with code 2."""


class UserError(Exception):
    """Bad input (flag, config, data directory, device): the message says what and how to fix."""


class DataError(UserError):
    """Data missing or malformed: the message names the expected files and how to get them."""


class TrainingDiverged(RuntimeError):
    """Loss became NaN/inf; the message names the task and iteration."""
