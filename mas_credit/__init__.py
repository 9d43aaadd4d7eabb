"""mas-credit: multi-agent credit assignment for teams of LLM agents in cooperative
text games whose true per-agent credit is known."""

__version__ = "0.1.0"
