"""Start the whole app: Redis (embedded unless REDIS_URL is set), an RQ worker and the web server, kept up."""

from __future__ import annotations

import os
import signal
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from config.embedded_redis import EmbeddedRedisError, socket_path, start_embedded_redis
from training.management.commands._supervisor import Child, Supervisor, become_subreaper, spawn

# How often serve looks for a process that died.
POLL_SECONDS = 0.5
# Gunicorn lets requests in flight finish this long after SIGTERM (below the supervisor's grace).
WEB_GRACEFUL_SECONDS = 10


class Command(BaseCommand):
    help = (
        "Run Redis (embedded unless REDIS_URL is set), an RQ worker for the gpu and default queues (and the "
        "multi-GPU queues its DUET_GPUS fit), and gunicorn; "
        "restart any of them that dies; Ctrl-C (SIGINT or SIGTERM) stops them all, work-horses included."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", default=os.environ.get("DUET_BIND", "127.0.0.1:8000"))
        parser.add_argument("--web-workers", type=int, default=int(os.environ.get("DUET_WEB_WORKERS", "2")))
        parser.add_argument(
            "--seed-round",
            action="store_true",
            help="once Redis is up, queue a first generation round with the default model if none ran yet",
        )

    def handle(self, *args: object, **options: object) -> None:
        stop = False

        def _stop(*_: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        become_subreaper()
        supervisor = Supervisor(self.stdout)
        try:
            self._start_children(supervisor, options)
            self.stdout.write(self.style.SUCCESS(f"Duet is up: http://{options['bind']}/  (Ctrl-C stops it)"))
            while not stop:
                supervisor.tick()
                time.sleep(POLL_SECONDS)
        finally:
            # Web first, Redis last, so the worker never loses Redis while it still runs.
            supervisor.stop()
        self.stdout.write("Duet stopped")

    def _start_children(self, supervisor: Supervisor, options: dict[str, object]) -> None:
        if "REDIS_URL" not in os.environ:
            socket = socket_path(settings.REDIS_URL)
            if socket is None:
                raise CommandError(f"the embedded Redis needs a unix:// REDIS_URL, not {settings.REDIS_URL}")
            try:
                # It stays in serve's process group: a Ctrl-C reaches it at once, and it saves as it stops.
                supervisor.add(Child("redis", lambda: start_embedded_redis(socket, spawn=spawn)))
            except EmbeddedRedisError as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(f"embedded Redis at {settings.REDIS_URL}")
        python = sys.executable
        # The second SIGTERM is RQ's cold shutdown: it kills the work-horse instead of waiting for its job.
        worker = [python, "manage.py", "rqworker", "gpu", "default", "--with-scheduler"]
        supervisor.add(Child("worker", lambda: spawn(worker), stop_signals=(signal.SIGTERM, signal.SIGTERM)))
        if options["seed_round"]:
            call_command("seed_round", stdout=self.stdout)
        web = [
            python, "-m", "gunicorn", "config.wsgi",
            "--bind", str(options["bind"]),
            "--workers", str(options["web_workers"]),
            "--threads", "4",
            "--graceful-timeout", str(WEB_GRACEFUL_SECONDS),
            "--access-logfile", "-",
        ]  # fmt: skip
        supervisor.add(Child("web", lambda: spawn(web)))
