"""Label Studio for real: a project with nlumon's labeling config, queue items pushed once each as pre-annotated
tasks, finished annotations pulled back as training examples that say where they came from.

It talks to Label Studio's REST API with ``requests`` rather than ``label-studio-sdk``: the SDK 2.x (2.1.2) pins
``opencv-python-headless<4.13``, which caps ``numpy<2.3`` below the project's pinned numpy, and installs black,
nltk and a code generator for what is here a handful of calls, all stable since Label Studio 1.x::

    GET  /api/projects?title=...            POST /api/projects               PATCH /api/projects/{id}
    GET  /api/tasks?project={id}&fields=all POST /api/projects/{id}/import   POST /api/token/refresh/

Tokens: a Personal Access Token (a JWT; what Label Studio offers by default since 1.17) is traded at
``/api/token/refresh/`` for an access token that lives minutes (``Authorization: Bearer``), traded again when the
server answers 401; a legacy token goes as ``Authorization: Token`` (its organization must allow legacy tokens).
The token never appears in a message, a log line or a repr: errors are built from the status and the server's
``detail``, and whatever else might quote a header goes through :func:`redact` first.

The high-level functions (:func:`push_items`, :func:`pull_examples`) take anything with the methods of
:class:`LabelStudioApi`, so they are tested with plain fakes and run against a real server in
``tests/integration/test_label_studio_server.py``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import requests

from labeling.items import LabelingItem
from labeling.label_studio import (
    LabelStudioFormatError,
    export_label_studio,
    import_label_studio,
    label_config,
    latest_annotation,
    merged_label_config,
    vote_slot_types,
)
from model_runtime.data.example import Example

log = logging.getLogger(__name__)

PAGE_SIZE = 100
IMPORT_BATCH = 100
_ERRNO = re.compile(r"\[Errno -?\d+\] [^'\")]+")
TOKEN_HELP = ("set NLUMON_LABEL_STUDIO_TOKEN (or label_studio.token in the settings file) to a Personal Access "
              "Token or a legacy token from Label Studio's Account & Settings page")


class LabelStudioError(RuntimeError):
    """An expected failure talking to Label Studio; the message says what went wrong and never holds the token."""


class LabelStudioUnreachable(LabelStudioError):
    """No answer from the server: not running, wrong URL, timeout."""


class LabelStudioAuthError(LabelStudioError):
    """The token is missing, malformed, or refused (401/403)."""


class LabelStudioNotFound(LabelStudioError):
    """The project (or another object) does not exist on the server."""


@dataclass(frozen=True)
class Project:
    id: int
    title: str
    label_config: str


class LabelStudioApi(Protocol):
    """The few calls push and pull need (:class:`LabelStudioClient` over HTTP; a fake in the unit tests)."""

    url: str

    def projects(self, title: str) -> list[Project]: ...
    def create_project(self, title: str, config: str) -> Project: ...
    def set_label_config(self, project_id: int, config: str) -> Project: ...
    def tasks(self, project_id: int, *, full: bool) -> Iterator[dict[str, Any]]: ...
    def import_tasks(self, project_id: int, tasks: Sequence[Mapping[str, Any]]) -> int: ...


class HttpSession(Protocol):
    """What the client needs of ``requests.Session``."""

    def request(self, method: str, url: str, **kwargs: Any) -> Any: ...


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with every secret replaced by ``***``.

    >>> redact("bad header 'Token abc123'", "abc123", None)
    "bad header 'Token ***'"
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def display_url(url: str) -> str:
    """``url`` without user:password, for messages.

    >>> display_url("http://me:pw@ls.example:8080/x")
    'http://ls.example:8080/x'
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def is_personal_access_token(token: str) -> bool:
    """Whether ``token`` is a JWT (a Personal Access Token) rather than a legacy token (40 hex characters).

    >>> is_personal_access_token("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ4IjoxfQ.c2ln")
    True
    >>> is_personal_access_token("0123456789abcdef0123456789abcdef01234567")
    False
    """
    parts = token.split(".")
    if len(parts) != 3:
        return False
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except (binascii.Error, ValueError):
        return False
    return isinstance(header, dict) and "alg" in header


class LabelStudioClient:
    """Label Studio's REST API over ``requests``; see the module docstring for the endpoints and the tokens."""

    def __init__(self, url: str, token: str, *, timeout_s: float = 30.0, session: HttpSession | None = None):
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
            raise LabelStudioError(f"Label Studio URL {display_url(url)!r} is not an http(s) URL")
        if not token:
            raise LabelStudioAuthError(f"no Label Studio API token: {TOKEN_HELP}")
        if any(c.isspace() or not c.isprintable() for c in token):
            raise LabelStudioAuthError(f"the Label Studio API token has spaces or control characters: {TOKEN_HELP}")
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._token = token
        self._personal = is_personal_access_token(token)
        self._access: str | None = None
        self._session = session if session is not None else requests.Session()

    def __repr__(self) -> str:
        return f"LabelStudioClient(url={display_url(self.url)!r})"

    # -- the LabelStudioApi calls ----------------------------------------------------------------------------------
    def projects(self, title: str) -> list[Project]:
        """Projects whose title contains ``title`` (the server's filter); callers pick exact matches."""
        found = []
        for page in self._pages("/api/projects", {"title": title}, "results", "count"):
            found.extend(Project(int(p["id"]), str(p.get("title") or ""), str(p.get("label_config") or ""))
                         for p in page)
        return found

    def project(self, project_id: int) -> Project:
        p = self._call("GET", f"/api/projects/{int(project_id)}", what=f"project {project_id}")
        return Project(int(p["id"]), str(p.get("title") or ""), str(p.get("label_config") or ""))

    def create_project(self, title: str, config: str) -> Project:
        p = self._call("POST", "/api/projects", json={"title": title, "label_config": config})
        return Project(int(p["id"]), str(p["title"]), str(p.get("label_config") or config))

    def set_label_config(self, project_id: int, config: str) -> Project:
        p = self._call("PATCH", f"/api/projects/{int(project_id)}", json={"label_config": config},
                       what=f"project {project_id}")
        return Project(int(p["id"]), str(p["title"]), str(p.get("label_config") or config))

    def tasks(self, project_id: int, *, full: bool) -> Iterator[dict[str, Any]]:
        """Every task of the project, page by page; ``full`` adds annotations and predictions."""
        params: dict[str, Any] = {"project": int(project_id)}
        if full:
            params["fields"] = "all"
        for page in self._pages("/api/tasks", params, "tasks", "total", what=f"project {project_id}"):
            yield from page

    def import_tasks(self, project_id: int, tasks: Sequence[Mapping[str, Any]]) -> int:
        answer = self._call("POST", f"/api/projects/{int(project_id)}/import", json=list(tasks),
                            what=f"project {project_id}")
        return int(answer.get("task_count", len(tasks)))

    def create_annotation(self, task_id: int, result: Sequence[Mapping[str, Any]], *,
                          was_cancelled: bool = False) -> dict[str, Any]:
        """What an annotator's Submit (or Skip, ``was_cancelled``) sends; the integration test uses it."""
        return self._call("POST", f"/api/tasks/{int(task_id)}/annotations",
                          json={"result": list(result), "was_cancelled": was_cancelled}, what=f"task {task_id}")

    # -- HTTP --------------------------------------------------------------------------------------------------------
    def _pages(self, path: str, params: Mapping[str, Any], key: str, total_key: str,
               what: str = "") -> Iterator[list[dict[str, Any]]]:
        seen, page = 0, 1
        while True:
            answer = self._call("GET", path, params={**params, "page": page, "page_size": PAGE_SIZE}, what=what)
            items = answer.get(key) or []
            seen += len(items)
            yield items
            if not items or seen >= int(answer.get(total_key) or 0):
                return
            page += 1

    def _call(self, method: str, path: str, *, what: str = "", **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        if response.status_code == 401 and self._personal:  # the short-lived access token expired: trade again
            self._access = None
            response = self._send(method, path, **kwargs)
        return self._answer(response, method, path, what)

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": self._authorization(), "Accept": "application/json"}
        return self._raw(method, path, headers=headers, **kwargs)

    def _raw(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            return self._session.request(method, self.url + path, timeout=self.timeout_s, **kwargs)
        except requests.Timeout:
            raise LabelStudioUnreachable(
                f"Label Studio at {display_url(self.url)} did not answer {method} {path} within {self.timeout_s:g} s"
            ) from None
        except requests.RequestException as error:  # refused, DNS, bad header...: may quote the request
            reason = redact(_short_reason(error), self._token, self._access)
            raise LabelStudioUnreachable(
                f"cannot reach Label Studio at {display_url(self.url)} ({reason}); is it running, and is the URL "
                "right (--url, NLUMON_LABEL_STUDIO_URL)?") from None

    def _authorization(self) -> str:
        if not self._personal:
            return f"Token {self._token}"
        if self._access is None:
            response = self._raw("POST", "/api/token/refresh/", json={"refresh": self._token},
                                 headers={"Accept": "application/json"})
            if response.status_code in (400, 401, 403):
                raise LabelStudioAuthError(
                    f"Label Studio at {display_url(self.url)} refused the Personal Access Token "
                    f"({response.status_code}: {self._detail(response)}): it is expired, revoked or from another "
                    f"server; {TOKEN_HELP}")
            access = self._answer(response, "POST", "/api/token/refresh/", "").get("access")
            if not isinstance(access, str) or not access:
                raise LabelStudioError("Label Studio's /api/token/refresh/ answered without an access token")
            self._access = access
        return f"Bearer {self._access}"

    def _answer(self, response: Any, method: str, path: str, what: str) -> Any:
        status = response.status_code
        if status in (401, 403):
            kind = "Personal Access Token" if self._personal else "legacy token"
            hint = "" if self._personal else " (a legacy token also needs legacy tokens enabled for the organization)"
            raise LabelStudioAuthError(
                f"Label Studio at {display_url(self.url)} refused the {kind} on {method} {path} ({status}: "
                f"{self._detail(response)}){hint}; {TOKEN_HELP}")
        if status == 404:
            raise LabelStudioNotFound(f"{what or path} not found on Label Studio at {display_url(self.url)} "
                                      f"({self._detail(response)})")
        if status >= 400:
            raise LabelStudioError(f"Label Studio at {display_url(self.url)} answered {status} to {method} {path}: "
                                   f"{self._detail(response)}")
        try:
            return response.json()
        except ValueError:
            raise LabelStudioError(f"{display_url(self.url)} answered {method} {path} with something that is not "
                                   "JSON: is it a Label Studio server?") from None

    def _detail(self, response: Any) -> str:
        try:
            body = response.json()
        except ValueError:
            body = (getattr(response, "text", "") or "")[:200]
        if isinstance(body, dict):
            body = body.get("detail") or body.get("validation_errors") or body
        return redact(str(body), self._token, self._access)


def _short_reason(error: Exception) -> str:
    """The operating system's reason (``[Errno 111] Connection refused``) when the message holds one.

    >>> _short_reason(OSError("Max retries (Caused by NewConnectionError('x: [Errno 111] Connection refused'))"))
    'OSError: [Errno 111] Connection refused'
    """
    found = _ERRNO.search(str(error))
    return f"{type(error).__name__}: {found.group(0) if found else error}"


# -- push ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PushPlan:
    """Which items to send: ``new`` ones (in input order, once each); the ids already on the server; and how many
    input lines repeated an id seen earlier in the input."""

    new: tuple[LabelingItem, ...]
    already_pushed: tuple[str, ...]
    repeated: int


def plan_push(items: Iterable[LabelingItem], pushed_item_ids: Iterable[str]) -> PushPlan:
    """Idempotent push: an item whose id is in a task's ``data.item_id`` already is not pushed again.

    >>> from datetime import datetime, timezone
    >>> from labeling.items import Reason
    >>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> item = lambda i: LabelingItem(i, "hi", ("hi",), "greet", ("O",), (Reason.AUDIT,), 1.0, t, t, "m", "shopper")
    >>> plan = plan_push([item("a"), item("b"), item("a"), item("c")], {"b"})
    >>> [i.id for i in plan.new], plan.already_pushed, plan.repeated
    (['a', 'c'], ('b',), 1)
    """
    pushed, seen = set(pushed_item_ids), set()
    new, already, repeated = [], [], 0
    for item in items:
        if item.id in seen:
            repeated += 1
            continue
        seen.add(item.id)
        if item.id in pushed:
            already.append(item.id)
        else:
            new.append(item)
    return PushPlan(tuple(new), tuple(already), repeated)


@dataclass(frozen=True)
class PushResult:
    project: Project
    project_action: str  # "created", "updated" (labeling config grown) or "found"
    pushed: int
    already_pushed: int
    repeated: int


def find_project(api: LabelStudioApi, title: str) -> Project | None:
    """The project titled exactly ``title``; ``None`` when there is none; an error when several share it."""
    matches = [p for p in api.projects(title) if p.title == title]
    if len(matches) > 1:
        ids = ", ".join(str(p.id) for p in sorted(matches, key=lambda p: p.id))
        raise LabelStudioError(f"{len(matches)} Label Studio projects at {display_url(api.url)} are titled "
                               f"{title!r} (ids {ids}); rename all but one")
    return matches[0] if matches else None


def ensure_project(api: LabelStudioApi, title: str, intents: Iterable[str],
                   slot_types: Iterable[str]) -> tuple[Project, str]:
    """The project titled ``title``, created with nlumon's labeling config, or grown to offer every intent and slot
    type given; with what was done (``created``, ``updated`` or ``found``)."""
    intents, slot_types = set(intents), set(slot_types)
    project = find_project(api, title)
    if project is None:
        return api.create_project(title, label_config(intents, slot_types)), "created"
    try:
        grown = merged_label_config(project.label_config, intents, slot_types)
    except LabelStudioFormatError as error:
        raise LabelStudioError(f"Label Studio project {title!r} (id {project.id}): {error}") from None
    if grown is None:
        return project, "found"
    return api.set_label_config(project.id, grown), "updated"


def push_items(api: LabelStudioApi, items: Iterable[LabelingItem], title: str, *, intents: Iterable[str] = (),
               slot_types: Iterable[str] = (), batch_size: int = IMPORT_BATCH) -> PushResult:
    """Send the items not yet in project ``title`` as pre-annotated tasks (the model's prediction first, then one per
    labeling function); create the project, or add the intents and slot types its config lacks, first.

    ``intents``/``slot_types`` widen the config beyond what the items use (e.g. every label of the model), so that
    an annotator can pick the right answer. Tasks are built (and checked) before anything is sent; a push cut short
    leaves whole batches on the server, and the next push sends the rest."""
    items = list(items)
    tasks = {item.id: task for item, task in zip(items, export_label_studio(items), strict=True)}
    wanted_intents = set(intents) | {item.intent for item in items}
    wanted_slots = set(slot_types) | {tag[2:] for item in items for tag in item.tags if tag != "O"}
    project, action = ensure_project(api, title, wanted_intents, wanted_slots | vote_slot_types(items))
    pushed_ids = {str(task.get("data", {}).get("item_id")) for task in api.tasks(project.id, full=False)}
    plan = plan_push(items, pushed_ids)
    sent = 0
    for start in range(0, len(plan.new), batch_size):
        batch = [tasks[item.id] for item in plan.new[start:start + batch_size]]
        api.import_tasks(project.id, batch)
        sent += len(batch)
        log.info("pushed %d/%d task(s) to Label Studio project %d", sent, len(plan.new), project.id)
    return PushResult(project, action, sent, len(plan.already_pushed), plan.repeated)


# -- pull ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PullResult:
    """Examples from the tasks with a submitted annotation; counts of the tasks that gave none, and why."""

    project: Project
    examples: list[Example]
    tasks: int
    unannotated: int  # no annotation at all
    cancelled: int  # only skipped (cancelled) annotations
    invalid: list[str] = field(default_factory=list)  # an annotation that is not a valid example (message per task)

    @property
    def source(self) -> str:
        """Where the examples came from, as ``nlumon model train --extra`` records it."""
        return f"human:label-studio:{self.project.id}"


def pull_examples(api: LabelStudioApi, title: str) -> PullResult:
    """Every task of project ``title`` whose latest non-cancelled annotation makes a valid example.

    An annotation that cannot be read (no intent chosen, a span over no token) is reported in ``invalid`` and
    skipped, so one slip of an annotator does not hold back the others' work."""
    project = find_project(api, title)
    if project is None:
        raise LabelStudioNotFound(f"no Label Studio project titled {title!r} at {display_url(api.url)}; "
                                  "`nlumon labeling push` creates it")
    examples, invalid, total, unannotated, cancelled = [], [], 0, 0, 0
    for task in api.tasks(project.id, full=True):
        total += 1
        if not task.get("annotations"):
            unannotated += 1
        elif latest_annotation(task) is None:
            cancelled += 1
        else:
            try:
                examples.extend(import_label_studio([task]))
            except LabelStudioFormatError as error:
                invalid.append(str(error))
    log.info("pulled %d example(s) from %d task(s) of Label Studio project %d", len(examples), total, project.id)
    return PullResult(project, examples, total, unannotated, cancelled, invalid)
