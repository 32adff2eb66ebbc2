"""workspace-agent-server: collects drift reports from workspaces and shows the fleet to admins."""

__version__ = "0.1.0"
