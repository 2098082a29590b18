"""A folder registry of model packages with an atomically swapped ``current`` pointer, behind the gate.

    registry/
      quick-20261123T180000Z-1a2b3c4d/     one verified package per version
      current -> quick-20261123T180000Z-1a2b3c4d    (relative symlink, replaced with rename(2))
      promotions.jsonl                     append-only: who became current when, over what, on which gate
      .promote.lock                        serialises promotions (check of `current` and swap in one step)

Workers watch ``registry/current`` and hot-reload when it points elsewhere; because the link is
replaced by a single rename, a reader sees either the old or the new package, never half of one.

:func:`promote_gated` (``nlumon model promote``) places a package only when it carries a passed gate
report (``gate-report.json``, :mod:`model_runtime.gate`) that names this very package (version and
manifest digest) as the challenger and the registry's current package as the champion; the first
promotion into an empty registry needs a passed report without a champion. A report made against an
older champion is stale: the package was never compared with what it would replace. ``force_reason``
overrides the refusal; the override is logged at WARNING and recorded in ``promotions.jsonl`` with the
reason and the refusal it overrode. :func:`promote` is the unchecked placement underneath (demo bootstrap,
tests); its log lines say ``"gate": "unchecked"``.

A version becomes a folder name here, so :func:`promote` refuses one that is not a plain name
(``model_runtime.package.is_valid_version``) or that names the registry's own entries.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from model_runtime.package import MANIFEST, ModelPackage, check_version, load_package

CURRENT = "current"
PROMOTIONS = "promotions.jsonl"
LOCK = ".promote.lock"
RESERVED = frozenset({CURRENT, PROMOTIONS})

log = logging.getLogger(__name__)


class RegistryError(RuntimeError):
    """The registry folder is not usable (e.g. ``current`` is a real folder, not a link)."""


class PromotionRefusedError(RegistryError):
    """The package has no passed gate report against the registry's current package."""


def _copy(source: Path, target: Path) -> None:
    """Hard-link files when source and registry share a file system (packages are ~200 MB), else copy."""

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link_or_copy)


def _user() -> str:
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid (containers)
        return "unknown"


@contextmanager
def _locked(registry: Path) -> Iterator[None]:
    registry.mkdir(parents=True, exist_ok=True)
    with open(registry / LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # two promotions must not both pass the champion check
        yield


def promote(
    package_dir: Path, registry: Path, *, gate: str = "unchecked", extra: dict[str, Any] | None = None
) -> ModelPackage:
    """Verify ``package_dir``, place it in ``registry`` under its version, and point ``current`` at it.

    No gate check: ``gate`` is what the promotions log records about it (:func:`promote_gated` passes the
    report digest or ``forced: <reason>``).
    """
    package = _verified(package_dir)  # a refused package leaves no trace, not even a registry folder
    with _locked(Path(registry)):
        return _place(package, Path(registry), gate, extra)


def _verified(package_dir: Path) -> ModelPackage:
    package = load_package(package_dir)
    version = check_version(package.version, package.path / MANIFEST)  # load_package checked it too
    if version.lower() in RESERVED:
        raise RegistryError(f"version {version!r} is a reserved name in the registry; re-package under another")
    return package


def _place(package: ModelPackage, registry: Path, gate: str, extra: dict[str, Any] | None) -> ModelPackage:
    version = package.version
    current = registry / CURRENT
    if current.exists() and not current.is_symlink():
        raise RegistryError(f"{current} is a real folder, not a link; move it away first")
    previous = current_version(registry)
    target = registry / version
    if target.resolve() != package.path:
        if target.exists():
            load_package(target)  # same version already there: it must be intact
        else:
            staging = registry / f".{version}.incoming"
            shutil.rmtree(staging, ignore_errors=True)
            _copy(package.path, staging)
            load_package(staging)  # the copy is verified before it can become current
            staging.rename(target)
    link = registry / f".{CURRENT}.tmp"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(version)
    os.replace(link, current)
    record = {
        "version": version,
        "previous": previous,
        "promoted_at": datetime.now(UTC).isoformat(),
        "source": str(package.path),
        "gate": gate,
        "user": _user(),
        **(extra or {}),
    }
    _append(registry / PROMOTIONS, record)
    return load_package(current, verify=False)


def _append(path: Path, record: dict[str, Any]) -> None:
    """One JSON line, appended and synced: the log is only ever added to."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def gate_refusal(package: ModelPackage, registry: Path) -> tuple[str | None, dict[str, Any] | None]:
    """``(None, report)`` when the package's gate report allows promoting it over the registry's current
    package, else ``(why not, report or None)``."""
    from model_runtime.gate import GATE_REPORT, GateReportError, package_identity, read_report

    try:
        report = read_report(package.path / GATE_REPORT)
    except GateReportError as error:
        return str(error), None
    me = package_identity(package)
    named = report.get("challenger") or {}
    if (named.get("version"), named.get("manifest_sha256")) != (me["version"], me["manifest_sha256"]):
        return (
            f"the gate report in {package.path} is for {named.get('version')!r} "
            f"(manifest {str(named.get('manifest_sha256'))[:12]}), not for this package; run the gate again",
            report,
        )
    if not report.get("promote") or report.get("decision") != "promote":
        return f"the gate report of {me['version']} says {report.get('decision')!r}: the gate did not pass", report
    champion = report.get("champion")
    current = registry / CURRENT
    if not current.is_symlink():
        if champion:
            return (
                f"the registry {registry} is empty but the gate report compared against champion "
                f"{champion.get('version')!r}; a first promotion needs a passed gate without --champion",
                report,
            )
        return None, report
    in_service = package_identity(load_package(current, verify=False))
    if not champion:
        return (
            f"the gate report has no champion, but {registry} serves {in_service['version']}: "
            f"gate against it (--champion {current})",
            report,
        )
    if (champion.get("version"), champion.get("manifest_sha256")) != (
        in_service["version"],
        in_service["manifest_sha256"],
    ):
        return (
            f"stale gate report: it compared against {champion.get('version')!r} but {registry} now serves "
            f"{in_service['version']!r}; gate again with --champion {current}",
            report,
        )
    return None, report


def promote_gated(package_dir: Path, registry: Path, *, force_reason: str | None = None) -> ModelPackage:
    """Promote only behind a passed gate report against the current package; ``force_reason`` overrides.

    Raises :class:`PromotionRefusedError` with what is missing. A package that is already current (same
    version and manifest) is left as it is and nothing is logged.
    """
    from model_runtime.gate import package_identity

    if force_reason is not None and not force_reason.strip():
        raise PromotionRefusedError("--force needs a non-empty --reason: the override is recorded for audit")
    registry = Path(registry)
    package = _verified(package_dir)
    with _locked(registry):
        current = registry / CURRENT
        if current.is_symlink() and package_identity(load_package(current, verify=False)) == package_identity(package):
            log.info("%s is already current in %s; nothing to do", package.version, registry)
            return load_package(current, verify=False)
        refusal, report = gate_refusal(package, registry)
        if refusal is None:
            from model_runtime.gate import REPORT_DIGEST

            return _place(package, registry, f"sha256:{report[REPORT_DIGEST]}", None)  # type: ignore[index]
        if force_reason is None:
            raise PromotionRefusedError(
                f"refusing to promote {package.version}: {refusal}. Override with --force --reason '...' "
                "(recorded in promotions.jsonl)"
            )
        log.warning(
            "FORCED promotion of %s into %s by %s, overriding: %s; reason: %s",
            package.version, registry, _user(), refusal, force_reason,
        )
        return _place(package, registry, f"forced: {force_reason.strip()}", {"overrode": refusal})


def promotions(registry: Path) -> list[dict[str, Any]]:
    """The promotions log, oldest first (an unreadable line is skipped with a WARNING, never fatal)."""
    path = Path(registry) / PROMOTIONS
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            records.append(json.loads(line))
        except ValueError:
            log.warning("%s:%d: not a JSON line; skipped", path, number)
    return records


def current_version(registry: Path) -> str | None:
    """The version ``current`` points at, or None when nothing was promoted yet."""
    current = Path(registry) / CURRENT
    return os.readlink(current) if current.is_symlink() else None
