"""workspace-agent: configure a Coder workspace's AI tools through LiteLLM, keep them so, report drift."""

__version__ = "0.1.0"
