"""`fedlink`: one command for every role. The root knows no side: each command
or group is an entry point in the `fedlink.commands` group (pyproject.toml),
imported only when it is used, so an agent install never loads the
coordinator's dependencies, and a side whose dependencies are not installed
answers with the extra to install instead of a traceback. Every command runs
under the one wrapper of `fedlink.cli.base` (its exit codes are listed there)."""
from __future__ import annotations

import functools
import sys
from importlib.metadata import EntryPoint, entry_points

import typer
from typer.core import TyperGroup

from fedlink.cli.base import INPUT, SHARED, fail, guard, lacks_dependency, needs_extra
from fedlink.files import keep_private

GROUP = "fedlink.commands"


@functools.cache
def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


@functools.cache
def _load(name: str):
    """The command for an entry point: a Typer app is a group, a function one command.
    Its value may name the extra it needs: `agents.cli:app [agent]`."""
    ep = _entry_points()[name]
    extra = ep.extras[0] if ep.extras else ""
    try:
        loaded = ep.load()
    except ModuleNotFoundError as error:
        if not (extra and lacks_dependency(error)):
            raise
        return _missing(name, extra)
    if isinstance(loaded, typer.Typer):
        command = typer.main.get_group(loaded)
    else:
        single = typer.Typer(add_completion=False)
        single.command(name)(loaded)
        command = typer.main.get_command(single)
    command.name = name
    return guard(command, {**SHARED, **getattr(sys.modules[ep.module], "EXIT_CODES", {})}, extra)


def _missing(name: str, extra: str):
    """Stands for a side that is not installed: any use of it says what to install."""
    missing = typer.Typer(add_completion=False)

    @missing.command(name, help=f"(not installed: needs the {extra} extra)", add_help_option=False,
                     context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
    def say(ctx: typer.Context) -> None:
        words = [name] + [a for a in ctx.args[:1] if not a.startswith("-")]
        fail(needs_extra(" ".join(words), extra), INPUT)

    return typer.main.get_command(missing)


class EntryPointGroup(TyperGroup):
    def list_commands(self, ctx: typer.Context) -> list[str]:
        return list(_entry_points())

    def get_command(self, ctx: typer.Context, name: str):
        return _load(name) if name in _entry_points() else None


app = typer.Typer(cls=EntryPointGroup, no_args_is_help=True, add_completion=False,
                  help="Privacy-preserving federated record linkage.")


def _version(asked: bool) -> None:
    if asked:
        from importlib.metadata import version

        print(f"fedlink {version('fedlink')}")
        raise typer.Exit()


@app.callback()
def root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit")) -> None:
    pass


def main() -> None:
    keep_private()  # every file any command writes is the user's alone (fedlink/files.py)
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
