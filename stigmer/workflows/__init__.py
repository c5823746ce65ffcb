"""The workflow domain: documents (parse, validate, order tasks), templating, and size limits.

Pure Python (json, re, dataclasses): the controllers, the server and the Temporal workflows all
use it, and the workflow sandbox passes it through (stigmer.temporal.workers.PASSTHROUGH_MODULES).
Import the submodules: ``from stigmer.workflows import workflowdoc``.
"""
