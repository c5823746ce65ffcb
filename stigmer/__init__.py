"""stigmer-py: keeps agent and workflow executions flowing through Temporal."""

__version__ = "0.1.0"
