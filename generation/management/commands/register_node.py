"""Register GPU nodes, e.g. the compose stack's two reference nodes:

python manage.py register_node node1=http://node1:5000 node2=http://node2:5000
"""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from generation.catalog import register_node


class Command(BaseCommand):
    help = "Create or update GPU nodes (name=base_url …) in a pool; idempotent."

    def add_arguments(self, parser) -> None:
        parser.add_argument("nodes", nargs="+", metavar="name=base_url")
        parser.add_argument("--pool", default="reference")
        parser.add_argument("--token", default=None, help="default: REFERENCE_NODE_TOKEN")
        parser.add_argument("--slots", type=int, default=1)

    def handle(self, *args, nodes: list[str], pool: str, token: str | None, slots: int, **opts):
        if slots < 1:
            raise CommandError("--slots must be at least 1")
        for spec in nodes:
            name, sep, base_url = spec.partition("=")
            if not sep or not name or not base_url.startswith(("http://", "https://")):
                raise CommandError(f"expected name=http://host:port, got {spec!r}")
            node = register_node(
                name,
                base_url,
                token=token or settings.REFERENCE_NODE_TOKEN,
                pool_slug=pool,
                slots=slots,
            )
            self.stdout.write(f"{node.name}: {node.base_url} in pool {pool}, {slots} slot(s)")
