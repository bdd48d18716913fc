"""``kit dashboard`` (serve the dashboard) and ``kit up`` (simulator + daemon + dashboard)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("up")
    def up(
        port: int = typer.Option(
            None, "--port", min=1, max=65535, help="Dashboard port (default KIT_DASHBOARD_PORT or 5006)."
        ),
        host: str = typer.Option("127.0.0.1", "--host", help="Address the dashboard listens on."),
        speed: float = typer.Option(60.0, "--speed", help="Simulator replay speed (60: one 1m candle per second)."),
    ) -> None:
        """Start everything: the simulator (unless a live exchange is configured), the daemon and the
        dashboard. Creates the demo user on first run and prints the URL and its credentials.
        Ctrl-C stops everything."""
        from kit.dashboard.up import run_up

        raise typer.Exit(run_up(port=port, host=host, speed=speed))

    @app.command("dashboard")
    def dashboard(
        port: int = typer.Option(None, "--port", min=1, max=65535, help="Port (default KIT_DASHBOARD_PORT or 5006)."),
        host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    ) -> None:
        """Serve the live dashboard (login, Market, My strategies, admin page) with panel serve."""
        from kit.dashboard.up import run_dashboard

        raise typer.Exit(run_dashboard(port=port, host=host))
