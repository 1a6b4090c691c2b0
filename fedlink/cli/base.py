"""What every command group shares: the stderr console, the exit codes, and the
one wrapper that turns a known error into a one-line message and its code.

- 0: done.
- 1: a bug: an unexpected error, shown with its traceback.
- 2: the command line, or the input it names (config, extract, schema, rule
  pack, certificates, database), is not valid; or the install lacks the extra
  the command needs.
- 3: the coordinator refused the call, or stayed unreachable through every retry.
- 4: the audit log does not verify (an agent stops when the coordinator's log
  was rewritten; `audit verify` names the first bad event).
- 130: interrupted (Ctrl-C).

The errors every command may meet are in `SHARED`; a command group module adds
its own in `EXIT_CODES` (type -> `Failure`). The most specific class of an
error decides; an error in neither is a bug and keeps its traceback.
"""
from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from typing import Callable, Mapping

import grpc
import typer
from typer.core import TyperGroup
from rich.console import Console
from rich.markup import escape

from fedlink.audit import AuditError
from fedlink.client import CoordinatorCertificateError, CoordinatorUnavailable

OK, BUG, INPUT, REFUSED, AUDIT = 0, 1, 2, 3, 4

console = Console(stderr=True)


@dataclass(frozen=True)
class Invocation:
    """The command that failed, as typed (`agent upload`), and its parameters."""

    command: str
    params: Mapping[str, object]


@dataclass(frozen=True)
class Failure:
    code: int
    message: Callable[[BaseException, Invocation], str] = lambda error, _: str(error)


def refused(error: grpc.RpcError, _: Invocation) -> str:
    what = "unavailable" if error.code() == grpc.StatusCode.UNAVAILABLE else "refused"
    return f"coordinator {what}: {error.code().name}: {error.details()}"


SHARED: dict[type, Failure] = {
    grpc.RpcError: Failure(REFUSED, refused),
    CoordinatorUnavailable: Failure(REFUSED, lambda e, run: f"{run.command} not complete: {e}"),
    CoordinatorCertificateError: Failure(INPUT),
    AuditError: Failure(AUDIT, lambda e, _: f"audit log does NOT verify: {e}"),
}


def fail(message: str, code: int) -> None:
    console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)  # one line, however long
    raise typer.Exit(code)


def needs_extra(command: str, extra: str) -> str:
    return f"`{command}` needs the {extra} extra: pip install 'fedlink[{extra}]'"


def lacks_dependency(error: ModuleNotFoundError) -> bool:
    """A third-party package is not installed (rather than a module of ours missing: a bug)."""
    return bool(error.name) and importlib.util.find_spec(error.name.partition(".")[0]) is None


def guard(command, codes: Mapping[type, Failure], extra: str = "", path: str = ""):
    """Wrap every callback under `command` (a Typer command or group, typed as
    `path`) so that a known error ends it with its message and code; `extra` is
    the install extra the commands need."""
    path = path or command.name
    if isinstance(command, TyperGroup):
        for name, sub in command.commands.items():
            guard(sub, codes, extra, f"{path} {name}")
    if command.callback is not None:
        command.callback = _guarded(command.callback, codes, extra, path)
    return command


def _guarded(callback: Callable, codes: Mapping[type, Failure], extra: str, command: str) -> Callable:
    @functools.wraps(callback)
    def run(**params):
        try:
            return callback(**params)
        except (typer.Exit, typer.Abort, typer.exceptions.TyperException):
            raise  # typer's own ends: usage errors, typer.Exit
        except ModuleNotFoundError as error:
            if not (extra and lacks_dependency(error)):
                raise
            fail(needs_extra(command, extra), INPUT)
        except Exception as error:
            failure = next((codes[cls] for cls in type(error).__mro__ if cls in codes), None)
            if failure is None:
                raise
            fail(failure.message(error, Invocation(command, params)), failure.code)

    return run


# -- options of the operator's and officer's commands ---------------------------

CoordOpt = typer.Option("127.0.0.1:50051", help="Coordinator address")
PkiOpt = typer.Option(..., help="PKI folder holding your certificate")
PartyOpt = typer.Option("operator", help="Your certificate's name in the PKI folder")
OfficerOpt = typer.Option("officer", help="Your certificate's name in the PKI folder")
