from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotate import services
from annotate.filters import names_parse
from annotate.models import CampaignAccess


class Command(BaseCommand):
    help = "Create a campaign: its own question, guidelines, k, people and gold rules; imports and rounds then name it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="its short name in URLs and --campaign options")
        parser.add_argument("--name", help="its title (default: the slug)")
        parser.add_argument("--k", type=int, default=None, help="judgements per comparison (default: the site's)")
        parser.add_argument("--question", default=None, help='asked on every card (default: "Which answer is better?")')
        parser.add_argument("--guidelines", default=None, help="a markdown file shown to annotators")
        parser.add_argument("--gold-rate", type=float, default=0.1, help="share of cards that are gold items, 0 to 1")
        parser.add_argument("--gold-threshold", type=float, default=0.7, help="gold accuracy that flags below it")
        parser.add_argument("--gold-min", type=int, default=5, help="gold answers before the threshold applies")
        parser.add_argument("--pause-flagged", action="store_true", help="stop serving cards to flagged annotators")
        parser.add_argument("--access", choices=CampaignAccess.values, default=CampaignAccess.EVERYONE)
        parser.add_argument("--users", default="", help="comma-separated usernames, with --access users")
        parser.add_argument("--group", default=None, help="a group's name, with --access group")

    def handle(self, *args: object, **options: object) -> None:
        slug = str(options["slug"])
        optional = {"question": options["question"]} if options["question"] is not None else {}
        try:
            campaign = services.campaign_create(
                slug=slug,
                name=str(options["name"] or slug),
                guidelines=_guidelines(options["guidelines"]),
                target_judgements=options["k"],  # type: ignore[arg-type]
                access=str(options["access"]),
                users=_users(str(options["users"])),
                group=_group(options["group"]),
                gold_rate=float(options["gold_rate"]),  # type: ignore[arg-type]
                gold_threshold=float(options["gold_threshold"]),  # type: ignore[arg-type]
                gold_min=int(options["gold_min"]),  # type: ignore[call-overload]
                pause_flagged=bool(options["pause_flagged"]),
                actor=None,
                **optional,  # type: ignore[arg-type]
            )
        except services.CampaignInvalid as exc:
            raise CommandError(f"campaign not created: {exc}") from exc
        self.stdout.write(f"campaign {campaign.slug} created (k={campaign.target_judgements})")


def _guidelines(path: object) -> str:
    if path is None:
        return ""
    file = Path(str(path))
    if not file.is_file():
        raise CommandError(f"{file}: no such file")
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CommandError(f"{file}: not UTF-8 text ({exc})") from exc


def _users(names: str) -> list[Any]:
    wanted = names_parse(names)
    found = list(get_user_model().objects.filter(username__in=wanted))
    missing = sorted(set(wanted) - {user.get_username() for user in found})
    if missing:
        raise CommandError(f"no such user: {', '.join(missing)}")
    return found


def _group(name: object) -> Group | None:
    if name is None:
        return None
    group = Group.objects.filter(name=str(name)).first()
    if group is None:
        raise CommandError(f"no group named {name!r}")
    return group
