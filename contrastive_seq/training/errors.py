"""The training layer's errors about the user's files, importable without torch (the CLI catches them)."""


class CheckpointError(RuntimeError):
    """A checkpoint file exists but cannot be read (corrupt, truncated, unsafe or not a checkpoint)."""
