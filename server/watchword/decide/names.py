"""The canonical forms of event types (S3) and object ids (S4), and the patterns matched against them.

Pure: no I/O. The decision rules, and the admin API when it stores patterns, use these and nothing else,
so a pattern is judged by the same rules when it is written as when it is matched.

Event types (S3). The canonical form is lowercase ASCII: one or more segments of `[a-z0-9_-]`, separated
by single dots (`invoice.paid`, `billing.invoice.payment_failed`), at most 255 characters. This is the
Standard Webhooks recommendation (full-stop delimited identifiers of a limited character set), lowercased.
A requested event type in any other form is refused, not folded: `invoice.INTERNAL.audit`, a zero-width
space, a newline or a glob metacharacter (`*`, `?`, `[`) would otherwise either slip past a deny pattern
written for the lowercase name or turn the request itself into a pattern. Refusing says so to the caller;
silently folding would make two spellings one event type behind its back. Patterns are written in the
same form, where a segment may also hold the globs `*`, `?` and `[...]`; `*` may cross dots, so
`invoice.*` covers `invoice.internal.audit`.

Object ids (S4). Any id is accepted except one holding `/`, `\\`, `..`, or a control, format (Unicode
Cc, Cf) or line/paragraph separator character: they make one id look like a path into
another. A data-provider pattern is matched segment by segment on `/`, so `*` never crosses one, even in
patterns compared against ids from before these checks.
"""

from __future__ import annotations

import re
import unicodedata
from fnmatch import fnmatchcase

MAX_NAME = 255
_EVENT_TYPE = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")
_EVENT_PATTERN = re.compile(r"[a-z0-9_\-*?\[\]!]+(?:\.[a-z0-9_\-*?\[\]!]+)*")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
OBJECT_SEPARATOR = "/"


def event_type_problem(event_type: str) -> str | None:
    """Why a requested event type is not in canonical form, or None."""
    if len(event_type) <= MAX_NAME and _EVENT_TYPE.fullmatch(event_type):
        return None
    if any(char in "*?[]" for char in event_type):
        return "an event type must not contain glob characters (*, ?, [ or ])"
    if any(_refused_char(char) for char in event_type):
        return "an event type must not contain control or invisible (format) characters"
    return (
        "an event type is lowercase letters, digits, '_' and '-' in segments separated by single dots, "
        f"at most {MAX_NAME} characters"
    )


def event_pattern_problem(pattern: str) -> str | None:
    """Why an allow/deny pattern is not written in the event types' canonical form, or None."""
    if len(pattern) <= MAX_NAME and _EVENT_PATTERN.fullmatch(pattern):
        return None
    if pattern != pattern.translate(_ASCII_LOWER) and not event_pattern_problem(
        pattern.translate(_ASCII_LOWER)
    ):
        return "write the pattern in lowercase: event types are matched in their lowercase canonical form"
    return (
        "a pattern is lowercase letters, digits, '_', '-' and the globs *, ? and [...] in segments "
        f"separated by single dots, at most {MAX_NAME} characters"
    )


def event_type_matches(event_type: str, pattern: str, *, fold: bool = False) -> bool:
    """Whether a canonical event type matches a pattern. `fold=True` lowercases (ASCII only) a pattern
    stored before patterns were checked: used for deny patterns, so an old `invoice.INTERNAL.*` still
    denies; an old allow pattern is compared as stored and so allows nothing it did not name."""
    return fnmatchcase(event_type, pattern.translate(_ASCII_LOWER) if fold else pattern)


def object_id_problem(object_id: str) -> str | None:
    """Why an object id is refused (S4), or None."""
    if "/" in object_id or "\\" in object_id:
        return "an object id must not contain '/' or '\\'"
    if ".." in object_id:
        return "an object id must not contain '..'"
    if object_id.isascii() and object_id.isprintable():
        return None  # the usual id, without a per-character lookup
    if any(_refused_char(char) for char in object_id):
        return "an object id must not contain control or invisible (format) characters"
    return None


def object_matches(object_id: str, pattern: str) -> bool:
    """Whether an object id matches a data-provider glob, segment by segment on '/': `*`, `?` and `[...]`
    match inside one segment only, and the pattern must have as many segments as the id."""
    ids, patterns = object_id.split(OBJECT_SEPARATOR), pattern.split(OBJECT_SEPARATOR)
    return len(ids) == len(patterns) and all(map(fnmatchcase, ids, patterns))


def _refused_char(char: str) -> bool:
    return unicodedata.category(char) in _REFUSED_CATEGORIES
