"""The errors a user can act on. A leaf module (no trl_ext imports), so every package can raise them; the recipes
report them as one clear message instead of a traceback (`trl_ext.cli.report_user_errors`)."""


class ConfigError(ValueError):
    """A configuration that cannot work (a misspelled TRL field, an unknown stage), named precisely."""


class DataError(ValueError):
    """Data that cannot be used, with every problem located (file and row)."""


class StageConfigMismatch(RuntimeError):
    """A complete stage output exists but was produced by a different configuration."""


class NonFiniteError(RuntimeError):
    """A loss, gradient or reward that is NaN or infinite; names the step and the checkpoint to resume from."""


USER_ERRORS: tuple[type[BaseException], ...] = (DataError, StageConfigMismatch, ConfigError, NonFiniteError)
