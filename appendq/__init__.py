"""appendq: feed leads into today's LiveVox campaign, within LiveVox's limits, with a full audit."""

__version__ = "0.1.0"
