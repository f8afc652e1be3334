"""Register GPU nodes, e.g. the compose stack's two reference nodes:

python manage.py register_node node1=http://node1:5000 node2=http://node2:5000

or a diffusers node serving one model from its own pool:

python manage.py register_node gpu1=http://gpu1:5000 --pool gpu --model wan2.1-t2v-1.3b
"""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from generation.catalog import register_node
from generation.models import VideoModel


class Command(BaseCommand):
    help = "Create or update GPU nodes (name=base_url …) in a pool; idempotent."

    def add_arguments(self, parser) -> None:
        parser.add_argument("nodes", nargs="+", metavar="name=base_url")
        parser.add_argument("--pool", default="reference")
        parser.add_argument("--token", default=None, help="default: REFERENCE_NODE_TOKEN")
        parser.add_argument("--slots", type=int, default=1)
        parser.add_argument(
            "--model",
            action="append",
            default=[],
            dest="models",
            help="route this catalog model to the pool (repeatable)",
        )

    def handle(
        self,
        *args,
        nodes: list[str],
        pool: str,
        token: str | None,
        slots: int,
        models: list[str],
        **opts,
    ):
        if slots < 1:
            raise CommandError("--slots must be at least 1")
        unknown = set(models) - set(VideoModel.objects.values_list("slug", flat=True))
        if unknown:
            raise CommandError(f"no such model in the catalog: {', '.join(sorted(unknown))}")
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
                models=models,
            )
            self.stdout.write(f"{node.name}: {node.base_url} in pool {pool}, {slots} slot(s)")
