"""What every command group shares: the consoles (results on stdout, progress
and messages on stderr), the exit codes, and the one wrapper that turns a
known error into a one-line message and its code.

- 0: done.
- 1: a bug: an unexpected error, shown with its traceback.
- 2: the command line, or the input it names (config, extract, schema, rule
  pack, certificates, a file or folder that is not there, database), is not
  valid; or the install lacks the extra the command needs.
- 3: the coordinator refused the call (the message names the gRPC status:
  NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED, FAILED_PRECONDITION, ...).
- 4: the audit log does not verify (an agent stops when the coordinator's log
  was rewritten; `audit verify` names the first bad event).
- 5: the coordinator could not be reached (through every retry, where the
  command retries): running the same command again later may succeed.
- 130: interrupted (Ctrl-C).

The errors every command may meet are in `SHARED`; a command group module adds
its own in `EXIT_CODES` (type -> `Failure`). The most specific class of an
error decides; an error in neither is a bug and keeps its traceback.
"""
from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Mapping

import grpc
import typer
from typer.core import TyperGroup
from rich.console import Console
from rich.markup import escape

from fedlink.audit import AuditError
from fedlink.client import CoordinatorCertificateError, CoordinatorUnavailable

OK, BUG, INPUT, REFUSED, AUDIT, UNREACHABLE = 0, 1, 2, 3, 4, 5
UNREACHABLE_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)

console = Console(stderr=True)
# Results. A pipe gets tables whole: rich cuts to 80 columns when it cannot
# read a terminal's width, so off a terminal the width is the content's.
out = Console() if Console().is_terminal else Console(width=100_000)


@dataclass(frozen=True)
class Invocation:
    """The command that failed, as typed (`agent upload`), and its parameters."""

    command: str
    params: Mapping[str, object]


@dataclass(frozen=True)
class Failure:
    code: int
    message: Callable[[BaseException, Invocation], str] = lambda error, _: str(error)

    def code_for(self, error: BaseException) -> int:
        return self.code


class RpcFailure(Failure):
    """A refusal (3), or an unreachable coordinator (5): one type, two codes."""

    def code_for(self, error: BaseException) -> int:
        return UNREACHABLE if error.code() in UNREACHABLE_CODES else REFUSED


def refused(error: grpc.RpcError, run: Invocation) -> str:
    if error.code() in UNREACHABLE_CODES:
        address = run.params.get("coordinator") or "the coordinator"
        return (f"coordinator unavailable: {error.code().name}: {address} did not answer ({error.details()}); "
                "is it running, and is --coordinator its address?")
    return f"coordinator refused: {error.code().name}: {error.details()}"


def missing_file(error: OSError, _: Invocation) -> str:
    """A path that is not there, or cannot be read, named as typed."""
    if error.filename is None:
        return str(error)
    return f"{error.filename}: {error.strerror.lower() if error.strerror else error}"


class InputError(ValueError):
    """A value on the command line that cannot be used; the message names the option."""


SHARED: dict[type, Failure] = {
    InputError: Failure(INPUT),
    grpc.RpcError: RpcFailure(REFUSED, refused),
    CoordinatorUnavailable: Failure(UNREACHABLE, lambda e, run: f"{run.command} not complete: {e}"),
    CoordinatorCertificateError: Failure(INPUT),
    AuditError: Failure(AUDIT, lambda e, _: f"audit log does NOT verify: {e}"),
    OSError: Failure(INPUT, missing_file),  # a config, export, certificate or key that is not there
}


def iso_time(epoch: float) -> str:
    """A time for people and programs: ISO 8601 in the local zone, with its offset."""
    return datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")


def epoch_of(text: str, option: str) -> float:
    """An ISO 8601 date or time from the command line (local time when it names no zone); 0 for ""."""
    if not text:
        return 0.0
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"{option} {text[:40]!r} is not an ISO 8601 date or time "
                         "(2025-06-30, 2025-06-30T08:00 or 2025-06-30T08:00+08:00)") from None
    return (moment if moment.tzinfo else moment.astimezone()).timestamp()


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
            fail(failure.message(error, Invocation(command, params)), failure.code_for(error))

    return run


# -- options of the operator's and officer's commands ---------------------------

CoordOpt = typer.Option("127.0.0.1:50051", help="Coordinator address")
PkiOpt = typer.Option(..., help="PKI folder holding your certificate")
PartyOpt = typer.Option("operator", help="Your certificate's name in the PKI folder")
OfficerOpt = typer.Option("officer", help="Your certificate's name in the PKI folder")
