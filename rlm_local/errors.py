"""User-facing errors: one sentence that says what to do; the CLI prints it and exits 1."""


class RlmLocalError(Exception):
    """Base of every error a user can cause; str() is the sentence shown to them."""


class ConfigError(RlmLocalError):
    pass


class ModelMissingError(RlmLocalError):
    pass


class ModelCorruptError(RlmLocalError):
    pass


class PullError(RlmLocalError):
    pass


class ContextOverflowError(RlmLocalError):
    """A prompt does not fit the model's window: callers split it rather than truncate silently."""

    def __init__(self, message: str, prompt_tokens: int, limit: int) -> None:
        super().__init__(message)
        self.prompt_tokens = prompt_tokens
        self.limit = limit


class InputError(RlmLocalError):
    pass


class RunCancelled(BaseException):
    """The caller stopped a run (Ctrl-C in chat, a cancelling MCP client).

    A BaseException, like KeyboardInterrupt: raised from an event listener, it must pass through
    the handlers that turn a bridge function's Exception into an error for the model's code.
    """
