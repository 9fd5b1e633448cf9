from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotate import selectors, services
from annotate.models import ApiToken


class Command(BaseCommand):
    help = (
        "Make a new API token for a user and print it as the last line (it is shown only once); "
        "--list their tokens, --revoke one by its prefix, or --rotate (revoke all, make one)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--list", action="store_true", help="list the user's tokens: prefix, made, expires")
        action.add_argument(
            "--revoke", metavar="PREFIX", help="revoke the token starting with PREFIX (--revoke=-… for one with a dash)"
        )
        action.add_argument("--rotate", action="store_true", help="revoke every token of the user and make one")

    def handle(self, *args: object, **options: object) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"no user named {options['username']!r}")
        if options["list"]:
            for token in selectors.api_tokens_of(user=user):  # type: ignore[arg-type]
                expires = f"{token.expires_at:%Y-%m-%d %H:%M}" if token.expires_at else "never"
                self.stdout.write(f"{token.prefix}  made {token.created_at:%Y-%m-%d %H:%M}  expires {expires}")
            return
        if options["revoke"]:
            try:
                services.api_token_revoke(user=user, prefix=str(options["revoke"]))  # type: ignore[arg-type]
            except ApiToken.DoesNotExist as exc:
                raise CommandError(f"{user.get_username()} has no token starting {options['revoke']!r}") from exc
            self.stdout.write(f"revoked {options['revoke']}")
            return
        create = services.api_token_rotate if options["rotate"] else services.api_token_create
        self.stdout.write(create(user=user).key)  # type: ignore[arg-type]
