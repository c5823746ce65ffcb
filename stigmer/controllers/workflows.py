"""WorkflowController: validate workflow documents on the validation worker, store them, read them.

Validation always goes through the Temporal validation worker (never skipped, never done in the
server process instead), so Create and Validate need Temporal. Create stores the document with
its validation result, valid or not, so that an invalid workflow's errors can be read back; it
cannot be executed. Only a document with no usable name is refused outright: there is nothing
to store it under.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable

from stigmer.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError, TemporalUnavailableError
from stigmer.store import DEFAULT_REQUEST_ID_TTL, WORKFLOW, RequestKey, Store, Workflow, body_digest
from stigmer.workflows import jsontext, workflowdoc
from stigmer.workflows.workflowdoc import ValidationResult

from . import validation as check
from .availability import require, unavailable
from .ports import Availability, Validator

KIND = "workflow"


class WorkflowController:
    def __init__(
        self,
        *,
        store: Store,
        availability: Availability,
        validate_timeout: float = 10.0,
        request_id_ttl: float = DEFAULT_REQUEST_ID_TTL,
        on_fast_fail: Callable[[str], None] | None = None,
    ) -> None:
        """``on_fast_fail("workflow")`` hears of each create refused because Temporal is not connected."""
        if validate_timeout <= 0:
            raise ValueError(f"validate_timeout must be positive, got {validate_timeout}")
        self._request_ttl = request_id_ttl
        self._store = store
        self._availability = availability
        self._validate_timeout = validate_timeout
        self._on_fast_fail = on_fast_fail
        self._validator: Validator | None = None  # set like ExecutionController._creator

    def set_validator(self, validator: Validator | None) -> None:
        self._validator = validator

    @property
    def validator(self) -> Validator | None:
        return self._validator

    async def validate(self, document: str) -> ValidationResult:
        """VALID or INVALID with errors; an invalid document is an answer, not an error."""
        check.byte_length("document", document)
        return await self._validate(document)

    async def create(self, document: str, *, request_id: str = "") -> Workflow:
        """Validate and store; with a request id, a retry returns the workflow stored the first time."""
        check.check_size("document", document, max_bytes=workflowdoc.MAX_DOCUMENT_BYTES)
        name = declared_name(document)
        request = check.check_request_id(request_id)
        key = RequestKey(request, body_digest(document), self._request_ttl) if request else None
        if key is not None:
            found = self._store.find_workflow_request(key)
            if found is not None:
                return found
        # Cheap early answer; the insert below still catches a concurrent create of the same name.
        existing = self._find(name)
        if existing is not None:
            if key is not None and existing.request_id == key.id:
                found = self._store.find_workflow_request(key)  # committed meanwhile by this create's other attempt
                if found is not None:
                    return found
            raise AlreadyExistsError(f"a workflow named {name!r} already exists")
        result = await self._validate(document, creating=True)
        try:
            return self._store.create_workflow(
                name=name, document=document, valid=result.valid, validation_errors=result.errors, request=key
            )
        except AlreadyExistsError as exc:
            if "request_id" in str(exc):
                raise
            raise AlreadyExistsError(f"a workflow named {name!r} already exists") from None

    def delete(self, id_or_name: str) -> Workflow:
        """Delete a workflow none of whose executions is unfinished, and return it; its name is free again."""
        self._check_ref(id_or_name)
        try:
            return self._store.delete_workflow(id_or_name)
        except NotFoundError:
            raise NotFoundError(KIND, check.shown(id_or_name)) from None

    @staticmethod
    def _check_ref(id_or_name: object) -> None:
        if not isinstance(id_or_name, str) or not id_or_name:
            raise InvalidArgumentError("id_or_name", "required (a workflow id 'wf-...' or name)")

    def get(self, id_or_name: str) -> Workflow:
        self._check_ref(id_or_name)
        found = self._find(id_or_name)
        if found is None:
            raise NotFoundError(KIND, check.shown(id_or_name))
        return found

    def list(self, *, page_size: int = 0, page_token: str = "") -> tuple[builtins.list[Workflow], str]:
        size = check.check_page_size(page_size)
        return check.list_page(lambda: self._store.list_workflows(page_size=size, page_token=page_token))

    async def _validate(self, document: str, *, creating: bool = False) -> ValidationResult:
        on_fast_fail = self._on_fast_fail
        refused = (lambda: on_fast_fail(WORKFLOW)) if creating and on_fast_fail is not None else None
        validator = await require(
            lambda: self._validator, self._availability, what="workflow validator", refused=refused
        )
        try:
            return await validator.validate(document, timeout=self._validate_timeout)
        except TemporalUnavailableError as err:
            self._availability.report_unavailable(err, client=validator.client)
            raise unavailable(self._availability, cause=str(err)) from err

    def _find(self, id_or_name: str) -> Workflow | None:
        try:
            return self._store.get_workflow(id_or_name)
        except NotFoundError:
            return None


def declared_name(document: str) -> str:
    """The name a document declares; InvalidArgumentError("document") if it is not JSON or has no usable name.

    Only what storing needs is checked here; everything else is the validation worker's job.
    """
    if not document.strip():
        raise InvalidArgumentError("document", "required (a JSON workflow document); got an empty string")
    try:
        data = json.loads(document)
    except json.JSONDecodeError as exc:
        raise InvalidArgumentError(
            "document", f"not valid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise InvalidArgumentError("document", "not valid JSON: nested too deeply") from None
    except ValueError as exc:  # a number beyond Python's digit limit for int()
        raise InvalidArgumentError("document", f"not valid JSON: {str(exc).split(';')[0]}") from None
    if not isinstance(data, dict):
        raise InvalidArgumentError("document", f"must be a JSON object, got {type(data).__name__}")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgumentError("document", "name: required (the workflow name, a non-empty string)")
    # A lone surrogate ("\\ud800" in the JSON) cannot be stored as text at all.
    unusable = any(ord(c) < 0x20 or c == "\x7f" for c in name) or jsontext.has_lone_surrogate(name)
    if len(name) > workflowdoc.MAX_NAME_LENGTH or unusable:
        raise InvalidArgumentError(
            "document",
            f"name: {check.shown(name)} is not usable "
            f"(at most {workflowdoc.MAX_NAME_LENGTH} characters, no control characters or lone surrogates)",
        )
    return name
