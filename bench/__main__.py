import importlib
import os
import pkgutil
import secrets
import sys
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# The benchmarks start the platform's processes (gunicorn, Celery) outside DEBUG, where
# the embedded secrets are refused (config/startup.py): this run gets its own, which
# every process it starts inherits (the studio's sessions are signed with the key).
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
os.environ.setdefault("REFERENCE_NODE_TOKEN", secrets.token_urlsafe(24))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import django  # noqa: E402

django.setup()


def main(argv: list[str]) -> int:
    wanted = argv[1:]
    names = sorted(
        info.name
        for info in pkgutil.iter_modules([str(Path(__file__).parent)])
        if info.name.startswith("bench_") and (not wanted or any(w in info.name for w in wanted))
    )
    if not names:
        print("no benchmark matches", wanted)
        return 1
    for name in names:
        print(f"== {name}")
        importlib.import_module(f"bench.{name}").main()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
