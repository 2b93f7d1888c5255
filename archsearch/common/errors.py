"""Errors a user can fix. The CLI prints them as one line and exits with status 2."""


class UserError(Exception):
    """Bad input from the user: a config key, a CLI value, a file, a dataset path.

    The message must be one line that names what is wrong and how to fix it. Anything else that
    escapes is a bug and keeps its stack trace.
    """


class ConfigError(UserError):
    """A config file, key or value is wrong."""


class DatasetError(UserError):
    """A dataset cannot be found, loaded or downloaded."""


class ArchitectureError(UserError):
    """An architecture file or string (desc YAML, IR JSON, genotype, arc sequence) is malformed."""


class CheckpointError(UserError):
    """A checkpoint or weights file is missing, corrupt or of another kind; the message starts with its path."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf; the last good checkpoint is kept."""
