"""Known failure modes, each with a message that says what went wrong and how to fix it.

The CLI turns any `AgentPRMError` into one line on stderr and exit code 2; anything else is a bug
and keeps its traceback.
"""


class AgentPRMError(Exception):
    """Base class for errors a user can fix (bad path, missing data, corrupt file, bad config)."""


class DataNotFoundError(AgentPRMError):
    """ALFWorld game files are not where we looked."""


class EngineNotInstalledError(AgentPRMError):
    """The ALFWorld/TextWorld engine is not importable."""


class CorruptRecordError(AgentPRMError):
    """A trajectory (or other JSONL) line could not be parsed; names file and line."""


class ModelLoadError(AgentPRMError):
    """A model path, GGUF file or checkpoint could not be loaded."""


class ConfigError(AgentPRMError):
    """A config file or option failed validation."""


class WorkerError(AgentPRMError):
    """An environment worker crashed or timed out; carries the worker index and traceback."""
