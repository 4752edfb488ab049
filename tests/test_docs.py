"""The docs site builds: `mkdocs build --strict` (every page in the nav, every link between pages, every anchor
and image valid), offline; and the README stays short and links every page of the site."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAX_README_LINES = 300


def nav_pages() -> list[str]:
    """The pages mkdocs.yml's nav lists (paths relative to docs/), in order."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    pages: list[str] = []

    def walk(entry) -> None:
        if isinstance(entry, str):
            pages.append(entry)
        elif isinstance(entry, list):
            for item in entry:
                walk(item)
        elif isinstance(entry, dict):
            for value in entry.values():
                walk(value)

    walk(config["nav"])
    return pages


def test_mkdocs_build_strict_succeeds(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
                          "--site-dir", str(site)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    for name in nav_pages():
        assert (site / Path(name).with_suffix("") / "index.html").exists() or name == "index.md", name
    assert (site / "index.html").exists() and (site / "report.png").exists()


def test_every_docs_page_is_in_the_nav():
    pages = set(nav_pages())
    on_disk = {path.relative_to(ROOT / "docs").as_posix() for path in (ROOT / "docs").rglob("*.md")}
    assert on_disk == pages


def test_readme_is_short_and_links_every_docs_page():
    text = README.read_text()
    assert len(text.splitlines()) <= MAX_README_LINES
    linked = set(re.findall(r"\]\(docs/([^)#\s]+\.md)(?:#[^)\s]*)?\)", text))
    missing = [name for name in nav_pages() if name not in linked]
    assert not missing, f"README.md does not link these docs pages: {missing}"
    for name in linked:
        assert (ROOT / "docs" / name).exists(), name


def test_the_docs_home_repeats_the_readme_set_up_commands():
    setup = README.read_text().split("## Set up on a fresh machine")[1].split("\n## ")[0]
    commands = re.findall(r"```bash\n(.*?)\n```", setup, flags=re.S)
    home = (ROOT / "docs" / "index.md").read_text()
    assert commands and all(f"```bash\n{command}\n```" in home for command in commands)
