"""The ``mss`` command."""
