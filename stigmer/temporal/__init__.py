"""The Temporal layer: workflows, activities, worker factories, creators, and the connection.

``connection`` binds these to the lifecycle state machine (statemachine). Import from the
submodules; this package file stays light so the workflow sandbox can import ``names`` and
``payloads`` without pulling in the store or the worker. Workflow documents and templating are
the domain's (stigmer.workflows), not Temporal's.
"""
