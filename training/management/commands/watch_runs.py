import time

from django.core.management.base import BaseCommand, CommandParser

from training import services


class Command(BaseCommand):
    help = (
        "Fail runs whose worker stopped sending heartbeats (killed, out of memory, machine lost); loops. "
        "Every RQ worker does the same as it runs: this is a watchdog for a deployment that wants one apart."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--every", type=float, default=10.0, help="seconds between checks")
        parser.add_argument("--once", action="store_true", help="check once and exit")

    def handle(self, *args: object, **options: object) -> None:
        while True:
            if reaped := services.runs_reap_stale():
                self.stdout.write(f"marked {reaped} run(s) failed: their worker stopped answering")
            if options["once"]:
                return
            time.sleep(float(options["every"]))  # type: ignore[arg-type]
