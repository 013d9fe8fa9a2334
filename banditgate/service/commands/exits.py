"""The exit statuses of every ``banditgate`` command, and the command group that gives usage errors their own.

Every non-zero status means one thing, so a script can tell a refusal from a typo:

====  ========================================================================================================
0     success (``gate``: the evidence is SUFFICIENT)
1     the service refused the request or the operation failed (``gate``: DEGRADED)
2     ``gate`` only: the evidence is INSUFFICIENT
3     the service could not be reached
4     ``gate`` only: the gate could not be evaluated (unknown policy or generation, unreadable model artifact,
      unreachable database, any error while evaluating); one line on standard error says why
64    usage error: an unknown or invalid option or argument, an unreadable or invalid input document,
      invalid settings, a missing API key (``EX_USAGE`` of sysexits.h)
====  ========================================================================================================

Click exits 2 on a usage error, which for ``banditgate gate`` is also INSUFFICIENT: :class:`UsageExitGroup`
makes the parser's errors exit 64 like the commands' own checks. (Typer, pinned, carries its own copy of
click as ``typer._click``: its usage errors are that copy's.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer
from typer._click.core import Context
from typer._click.exceptions import UsageError
from typer.core import TyperGroup

if TYPE_CHECKING:
    from banditgate.service.settings import Settings

EXIT_FAILED = 1
EXIT_UNREACHABLE = 3
EXIT_CANNOT_EVALUATE = 4
EXIT_USAGE = 64

#: The table above, for ``banditgate --help``.
EXIT_STATUS_HELP = (
    "Exit status: 0 success; 1 refused by the service or failed; 3 service unreachable; 64 usage error (bad "
    "option or argument, unreadable input document, invalid settings, missing API key). banditgate gate: 0 "
    "SUFFICIENT, 1 DEGRADED, 2 INSUFFICIENT, 4 cannot evaluate, 64 usage error."
)


class UsageExitGroup(TyperGroup):
    """The root command group: a usage error anywhere below it (parsing an option or argument, an unknown
    command, a parameter check) exits :data:`EXIT_USAGE` instead of click's 2."""

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except UsageError as exc:
            exc.exit_code = EXIT_USAGE
            raise

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            exc.exit_code = EXIT_USAGE
            raise


def load_settings() -> Settings:
    """The configured settings; invalid ones (a short API key, a bad policy) exit :data:`EXIT_USAGE` saying why."""
    from pydantic import ValidationError

    from banditgate.service.settings import Settings

    try:
        return Settings()
    except (ValidationError, ValueError) as exc:
        typer.secho(f"invalid settings: {exc}", fg="red", err=True)
        raise typer.Exit(EXIT_USAGE) from None
