import secrets
from pathlib import Path

from django.core.management.base import BaseCommand, CommandParser

from annotate import services
from annotate.management.commands._importing import add_campaign_argument, campaign_option

DEMO_DIR = Path(__file__).resolve().parents[2] / "demo"


class Command(BaseCommand):
    help = "Load the demo prompts and pairs, and make an admin and an annotator whose passwords it prints."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--admin", default="admin")
        parser.add_argument("--annotator", default="annotator")
        add_campaign_argument(parser)

    def handle(self, *args: object, **options: object) -> None:
        campaign = campaign_option(options["campaign"])
        for kind, name in (("prompts", "prompts.jsonl"), ("pairs", "pairs.jsonl")):
            with (DEMO_DIR / name).open("rb") as stream:
                if kind == "prompts":
                    result = services.prompts_import(stream=stream, name=f"demo/{name}", campaign=campaign)
                else:
                    result = services.pairs_import(stream=stream, name=f"demo/{name}", campaign=campaign)
            self.stdout.write(f"demo/{name}: {result.summary()}")
        for username, staff in ((options["admin"], True), (options["annotator"], False)):
            password = secrets.token_urlsafe(9)
            services.annotator_create(username=str(username), password=password, staff=staff, superuser=staff)
            role = "admin    " if staff else "annotator"
            self.stdout.write(self.style.SUCCESS(f"{role}  user: {username}  password: {password}"))
