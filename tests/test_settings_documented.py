"""Every environment variable settings.py reads is documented in .env.example and README."""

import re
from pathlib import Path

from django.conf import settings

ROOT = Path(settings.BASE_DIR)
READ = re.compile(
    r"""env_(?:str|bool|int|list)\(\s*["'](\w+)["']|os\.environ\.get\(["'](\w+)["']"""
)


def _variables_read() -> set[str]:
    text = (ROOT / "config" / "settings.py").read_text()
    return {a or b for a, b in READ.findall(text)}


def test_every_setting_is_in_env_example_and_readme():
    names = _variables_read()
    assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY"} <= names
    example = (ROOT / ".env.example").read_text()
    readme = (ROOT / "README.md").read_text()
    missing_example = sorted(n for n in names if not re.search(rf"^{n}=", example, re.M))
    missing_readme = sorted(n for n in names if f"`{n}`" not in readme)
    assert not missing_example, f"not in .env.example: {missing_example}"
    assert not missing_readme, f"not in README.md: {missing_readme}"
