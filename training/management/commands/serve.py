"""Start the whole app: Redis (embedded unless REDIS_URL is set), an RQ worker, a run watchdog, the web server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from config.embedded_redis import EmbeddedRedisError, socket_path, start_embedded_redis


class Command(BaseCommand):
    help = "Run Redis (embedded unless REDIS_URL is set), an RQ worker for the gpu and default queues, and gunicorn."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", default=os.environ.get("DUET_BIND", "127.0.0.1:8000"))
        parser.add_argument("--web-workers", type=int, default=int(os.environ.get("DUET_WEB_WORKERS", "2")))
        parser.add_argument(
            "--seed-round",
            action="store_true",
            help="once Redis is up, queue a first generation round with the default model if none ran yet",
        )

    def handle(self, *args: object, **options: object) -> None:
        children: list[subprocess.Popen[bytes]] = []
        if "REDIS_URL" not in os.environ:
            socket = socket_path(settings.REDIS_URL)
            if socket is None:
                raise CommandError(f"the embedded Redis needs a unix:// REDIS_URL, not {settings.REDIS_URL}")
            try:
                children.append(start_embedded_redis(socket))
            except EmbeddedRedisError as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(f"embedded Redis at {settings.REDIS_URL}")
        python = sys.executable
        children.append(subprocess.Popen([python, "manage.py", "rqworker", "gpu", "default", "--with-scheduler"]))
        children.append(subprocess.Popen([python, "manage.py", "watch_runs"]))
        if options["seed_round"]:
            call_command("seed_round", stdout=self.stdout)
        children.append(
            subprocess.Popen(
                [
                    python,
                    "-m",
                    "gunicorn",
                    "config.wsgi",
                    "--bind",
                    str(options["bind"]),
                    "--workers",
                    str(options["web_workers"]),
                    "--threads",
                    "4",
                    "--access-logfile",
                    "-",
                ]
            )
        )
        self.stdout.write(self.style.SUCCESS(f"Duet is up: http://{options['bind']}/  (Ctrl-C stops it)"))
        stop = False

        def _stop(*_: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        try:
            while not stop and all(child.poll() is None for child in children):
                time.sleep(0.5)
        finally:
            # Web first, Redis last, so the worker never loses Redis while it still runs.
            for child in reversed(children):
                if child.poll() is None:
                    child.terminate()
                try:
                    child.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    child.kill()
        failed = [c.args for c in children if c.returncode not in (0, -signal.SIGTERM, None)]
        if failed and not stop:
            raise CommandError(f"a process stopped unexpectedly: {failed[0]!r}")
