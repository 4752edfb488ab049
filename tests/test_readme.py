"""The README and the docs tell the truth: the config table, the CLI and the set-up commands match the code.

The README keeps the set-up commands (CI runs the test command from it); the tables and the longer text live in
the docs pages (docs/*.md, built by mkdocs, see tests/test_docs.py)."""
from __future__ import annotations

import re
from pathlib import Path

from kaggle_planet.cli import COMMANDS
from kaggle_planet.config.schema import key_table_markdown

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"


def page(name: str) -> str:
    """One docs page's text, e.g. page("configs") reads docs/configs.md."""
    return (DOCS / f"{name}.md").read_text()


def all_text() -> str:
    """The README and every docs page, one after the other."""
    return "\n".join(path.read_text() for path in [README, *sorted(DOCS.glob("*.md"))])


def test_config_key_table_is_current():
    text = page("configs")
    table = text.split("<!-- config-keys -->")[1].split("<!-- /config-keys -->")[0].strip()
    assert table == key_table_markdown().strip(), "regenerate the table in docs/configs.md with config.key_table_markdown()"


def test_every_subcommand_is_documented():
    text = all_text()
    missing = [name for name in COMMANDS if f"kaggle-planet {name}" not in text]
    assert not missing


def test_exactly_two_fresh_machine_commands_and_ci_runs_the_test_one():
    text = README.read_text()
    setup = text.split("## Set up on a fresh machine")[1].split("\n## ")[0]
    commands = re.findall(r"```bash\n(.*?)\n```", setup, flags=re.S)
    assert len(commands) == 2
    assert commands[0].endswith("kaggle-planet demo") and "pytest" in commands[1]
    ci = (README.parent / ".ci" / "run").read_text()
    assert "<!-- test-command -->" in ci and "<!-- test-command -->" in setup.split(commands[1])[0].split(commands[0])[1]


def test_every_augment_preset_and_recipe_table_entry_is_documented():
    from kaggle_planet.data import augment
    from kaggle_planet.recipe import losses, optim

    text = page("configs")
    presets = text.split("### Augmentation presets")[1].split("\n## ")[0]
    assert all(f"| `{name}` |" in presets for name in augment.PRESETS)
    assert all(preset.help for preset in augment.PRESETS.values())
    text = page("recipe")
    for name in [*losses.LOSSES, *optim.SCHEDULERS]:
        assert f"`{name}`" in text, name


def test_the_recipe_example_in_the_readme_loads():
    from kaggle_planet.config.schema import config_from_dict

    text = page("recipe")
    block = text.split("A recipe in a config")[1].split("```yaml\n")[1].split("```")[0]
    import yaml

    cfg = config_from_dict(yaml.safe_load(block), source="docs/recipe.md recipe example")
    assert cfg.resolved_model("resnet34").loss == "soft_f2" and cfg.train.optimizer == "lamb"


def test_competition_tables_are_current():
    """docs/competitions.md's preset, layout-key and submission-format tables are the tables themselves."""
    from kaggle_planet.core.metrics import metric_table_markdown
    from kaggle_planet.data.competitions import preset_table_markdown
    from kaggle_planet.data.layout import layout_table_markdown, submission_table_markdown

    text = page("competitions")
    for marker, table in (("preset-table", preset_table_markdown()), ("layout-keys", layout_table_markdown()),
                          ("submission-formats", submission_table_markdown()), ("metric-table", metric_table_markdown())):
        found = text.split(f"<!-- {marker} -->")[1].split(f"<!-- /{marker} -->")[0].strip()
        assert found == table.strip(), f"regenerate the {marker} table in docs/competitions.md"
