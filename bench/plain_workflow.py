"""The workflow of the plain-SDK contender: what a user would write instead of stigmer.

Shaped like stigmer's agent execution (three activities: mark started, run the agent, record the
result) so that "first execution COMPLETED" means comparable work; no store, no connection
management. Kept in its own module because the SDK's sandbox re-imports workflow modules.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

WORKFLOW = "bench-plain/echo"
STEP_TIMEOUT = timedelta(seconds=10)


@activity.defn(name="bench-plain/step")
async def step(text: str) -> str:
    return text


@workflow.defn(name=WORKFLOW)
class PlainEchoWorkflow:
    @workflow.run
    async def run(self, message: str) -> str:
        for stage in ("mark-started", "run-agent", "complete"):
            await workflow.execute_activity(step, f"{stage}: {message}", start_to_close_timeout=STEP_TIMEOUT)
        return f"[echo] {message}"
