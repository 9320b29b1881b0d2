"""Default configuration shipped with the server (``conf/mss.toml``)."""
