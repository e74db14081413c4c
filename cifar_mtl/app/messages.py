"""Messages for the user: errors that say what to do (never a traceback), escaped text, and
flash messages (set in a widget callback, shown once on the next render)."""

from __future__ import annotations

import logging
import re

import streamlit as st

from cifar_mtl.errors import UserError

_LOG = logging.getLogger("cifar_mtl.app")


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=^&])")


def escape_markdown(text, *, keep_code: bool = False) -> str:
    """`text` with every markdown character escaped, so data and addresses render as typed.

    Run errors, reviewer names and job fields come from files and the page address;
    rendered as markdown, `![x](http://host/p.png)` would make every viewer's browser
    fetch an outside address. With `keep_code`, spans in backticks stay code spans
    (their content is shown literally anyway): the library's own messages use them.
    """
    text = str(text)
    if not keep_code:
        return _MARKDOWN_SPECIAL.sub(r"\\\1", text)
    parts = re.split(r"(`[^`\n]+`)", text)
    return "".join(p if k % 2 else _MARKDOWN_SPECIAL.sub(r"\\\1", p) for k, p in enumerate(parts))


def error_message(exc: BaseException, context: str | None = None) -> str:
    """One paragraph for the user: what failed and what to do next.

    Library errors (`UserError`) carry their own advice; anything else is named with
    its type and a pointer to the server's log.
    """
    prefix = f"{context}: " if context else ""
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, UserError):
        return prefix + text
    if isinstance(exc, (ValueError, OSError)):
        return f"{prefix}{text}. Check the file or the input named here, then reload the page."
    return (
        f"{prefix}unexpected {type(exc).__name__}: {text}. The rest of the app still works; "
        "the server's console has the details for a bug report."
    )


def show_error(exc: BaseException, context: str | None = None) -> None:
    """Render `exc` as an error box, never a traceback: an unexpected one goes to the server log."""
    st.error(escape_markdown(error_message(exc, context), keep_code=True), icon=":material/error:")
    if not isinstance(exc, (UserError, ValueError, OSError)):
        _LOG.error("%s", context or "unexpected error", exc_info=exc)


# --- flash messages ------------------------------------------------------------------------

_FLASH = "_flash_"
ICONS = {"error": ":material/error:", "success": ":material/check:", "info": ":material/info:",
         "warning": ":material/warning:"}


def flash(slot: str, text: str, kind: str = "error") -> None:
    """Keep `text` for the next render of `show_flash(slot)`: a callback's outcome.

    `kind` is "error", "success", "info", "warning" or "toast". Widget callbacks run
    before the script, so what they say is kept in the session and shown once.
    """
    st.session_state[_FLASH + slot] = (kind, str(text))


def flash_error(slot: str, exc: BaseException, context: str) -> None:
    """`flash` of `error_message(exc, context)`."""
    flash(slot, error_message(exc, context), "error")


def show_flash(slot: str) -> None:
    """Show (and forget) the message a callback left in `slot`, if any; its text is escaped."""
    kind, text = st.session_state.pop(_FLASH + slot, (None, None))
    if not text:
        return
    body = escape_markdown(text, keep_code=True)
    if kind == "toast":
        st.toast(body)
    else:
        getattr(st, kind)(body, icon=ICONS[kind])
