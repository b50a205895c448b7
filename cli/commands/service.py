"""The service commands: ``serve``, ``worker``, ``agent`` and ``admin`` (users and tokens)."""

from __future__ import annotations

import argparse
import shlex
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.console import CLIError, console

if TYPE_CHECKING:
    from store.db import Database
    from store.settings import Settings

HomeOption = Annotated[Path | None, typer.Option(help="state directory (default: HWNAS_HOME or ~/.hwnas)")]


def settings_for(home: Path | None) -> Settings:
    """The service settings from ``HWNAS_*``, with `home` instead when given."""
    from store.settings import Settings

    settings = Settings()
    return settings.model_copy(update={"home": home}) if home else settings


def serve(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    home: HomeOption = None,
    ray: Annotated[bool, typer.Option("--ray", help="run jobs on Ray (a local one unless RAY_ADDRESS is set)")] = False,
    no_worker: Annotated[bool, typer.Option("--no-worker", help="serve the API only")] = False,
) -> None:
    """The API + an embedded job worker + SQLite, in one command: migrate, make the first user, serve."""
    import uvicorn

    from api.app import create_app
    from api.auth import ensure_first_user, user_names
    from store.db import Database
    from workers.runner import runner_from_settings

    settings = settings_for(home)
    runner = runner_from_settings(settings, in_process=not ray, migrate=True)
    db = Database(settings.db_url)
    token = ensure_first_user(db)
    if token:
        console.print(f"created user 'admin'; its API token (shown once): [bold]{token}[/]", highlight=False)
    else:  # tokens are shown once, when created: tell the user how to get another one
        names = user_names(db)
        where = f" --home {shlex.quote(str(home))}" if home else ""
        console.print(f"no API token? create one: hwnas admin create-token {shlex.quote(names[0])}{where} "
                      f"(users: {', '.join(names)})", markup=False, highlight=False)  # fmt: skip
    db.dispose()
    stop = threading.Event()
    worker = threading.Thread(target=runner.serve, kwargs={"stop": stop}, name="hwnas-worker", daemon=True)
    if not no_worker:
        worker.start()
    console.print(f"hwnas API on http://{host}:{port} (state in {settings.home_dir})")
    console.print(f"web view: http://{host}:{port}/ui/ (sign in with an API token)", highlight=False)
    try:
        uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
    finally:
        stop.set()


def worker(
    once: Annotated[bool, typer.Option("--once", help="run at most one job, then exit")] = False,
    drain: Annotated[bool, typer.Option("--drain", help="exit when no job is left to claim")] = False,
    poll: Annotated[
        float | None, typer.Option(help="seconds between looks at an empty queue (default: settings)")
    ] = None,
    lease: Annotated[float | None, typer.Option(help="lease length in seconds (default: settings)")] = None,
    kinds: Annotated[str | None, typer.Option(help="only these job kinds, comma-separated")] = None,
    worker_id: Annotated[str | None, typer.Option(help="name in leases (default: host:pid:random)")] = None,
    in_process: Annotated[bool, typer.Option("--in-process", help="run the work in this process, not on Ray")] = False,
    migrate: Annotated[bool, typer.Option("--migrate", help="upgrade the database schema first")] = False,
) -> None:
    """Run queued jobs from the store that HWNAS_HOME / HWNAS_DATABASE_URL name (on Ray unless --in-process)."""
    import logging
    import signal

    from workers.runner import NotMigratedError, runner_from_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        runner = runner_from_settings(
            settings_for(None), in_process=in_process, migrate=migrate, lease_s=lease, poll_s=poll,
            kinds=kinds.split(",") if kinds else None, worker_id=worker_id,
        )  # fmt: skip
    except NotMigratedError as exc:
        raise CLIError(str(exc)) from None
    stop = threading.Event()
    # SIGINT/SIGTERM: finish the current job, then exit.
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    console.print(f"worker {runner.worker_id} on {runner.queue.db.url.render_as_string(hide_password=True)}")
    try:
        count = runner.serve(stop=stop, max_jobs=1 if once else None, drain=once or drain)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        runner.queue.db.dispose()
    console.print(f"worker {runner.worker_id}: ran {count} job(s)")


def agent(
    target: Annotated[str, typer.Option(help="the target this device measures, e.g. rpi4-ort")],
    server: Annotated[str, typer.Option(envvar="HWNAS_SERVER", help="the service's URL, e.g. http://10.0.0.5:8000")],
    token: Annotated[str, typer.Option(envvar="HWNAS_TOKEN", help="an API token (hwnas admin create-token)")],
    name: Annotated[str | None, typer.Option(help="the agent's name (default: the host name)")] = None,
    poll: Annotated[float, typer.Option(help="seconds between polls when idle")] = 2.0,
    lease: Annotated[float | None, typer.Option(help="seconds a claimed task is ours (default: the server's)")] = None,
    max_tasks: Annotated[int | None, typer.Option(help="exit after this many tasks")] = None,
    idle_exit: Annotated[float | None, typer.Option(help="exit after this many seconds without a task")] = None,
) -> None:
    """Measure latency tasks of a target on this device for a remote service (needs no torch)."""
    from workers.agent import run

    args = argparse.Namespace(
        server=server, token=token, target=target, name=name, poll=poll, lease=lease, max_tasks=max_tasks,
        idle_exit=idle_exit,
    )  # fmt: skip
    code = run(args)
    if code:
        raise typer.Exit(code)


admin = typer.Typer(help="Users and API tokens.", no_args_is_help=True)


def admin_db(home: Path | None, *, create: bool = False) -> Database:
    """The store of `home` (else ``HWNAS_HOME`` / ``HWNAS_DATABASE_URL``, else ~/.hwnas), its schema upgraded first.

    A store that does not exist yet is made only where the user named it (``--home``, the
    environment) or with `create`: an admin command without ``--home`` must not start a new store
    in ~/.hwnas when the user meant another one, e.g. the quickstart's.

    Raises:
        CLIError: no store at the default place, and `create` is False.
    """
    from store.db import Database
    from store.migrate import upgrade

    settings = settings_for(home)
    named = {"home", "database_url"} & settings.model_fields_set
    if not (named or create or (settings.home_dir / "hwnas.db").exists()):
        raise CLIError(
            f"no hwnas store in {settings.home}: pass --home DIR (after a quickstart: --home hwnas-out/service) or "
            "set HWNAS_HOME; to start a new store there: hwnas admin create-user NAME --create"
        )
    upgrade(settings.db_url)
    return Database(settings.db_url)


@admin.command("create-user")
def create_user(
    name: Annotated[str, typer.Argument(help="the user's name")],
    is_admin: Annotated[bool, typer.Option("--admin", help="an administrator")] = False,
    token: Annotated[bool, typer.Option("--token", help="also print a new API token for the user")] = False,
    home: HomeOption = None,
    create: Annotated[
        bool, typer.Option("--create", help="start a new store in the default home if there is none")
    ] = False,
) -> None:
    """Create a user (and, with --token, an API token for it)."""
    from api.auth import create_token
    from api.auth import create_user as make_user

    db = admin_db(home, create=create)
    user = make_user(db, name, is_admin=is_admin)
    console.print(f"created user {user.name!r} (id {user.id}{', admin' if user.is_admin else ''})")
    if token:
        console.print(create_token(db, user.id, name="created with the user"), highlight=False)


@admin.command("create-token")
def create_token(
    user: Annotated[str, typer.Argument(help="the user's name")],
    label: Annotated[str, typer.Option(help="a name for the token")] = "",
    home: HomeOption = None,
) -> None:
    """Print a new API token of a user (the secret is shown only now)."""
    from api.auth import create_token as make_token

    console.print(make_token(admin_db(home), user, name=label), highlight=False)


def register(app: typer.Typer) -> None:
    """Add the service commands to `app`."""
    app.command("serve", help="The API + an embedded job worker + SQLite, in one command.")(serve)
    app.command("worker", help="Run queued jobs (training, search, export, ...) from the SQL store.")(worker)
    app.command("agent", help="Measure latency tasks of a target on this device for a remote service.")(agent)
    app.add_typer(admin, name="admin")
