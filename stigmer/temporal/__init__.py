"""The Temporal layer: workflows, activities, worker factories and creators.

`connection.py` (the lead's) binds these to the lifecycle state machine. Import from the
submodules; this package file stays light so the workflow sandbox can import `names`,
`payloads` and `workflowdoc` without pulling in the store or the worker.
"""
