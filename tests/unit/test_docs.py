"""docs/topics.md documents what the code defines."""

from pipeline.model.schemas import SCHEMAS
from pipeline.model.topics import ALL_TOPICS, DLQ_OFFSET, DLQ_PARTITION, DLQ_REASON, DLQ_TOPIC
from tests.conftest import ROOT


def test_topics_page_names_every_topic_column_and_header() -> None:
    page = (ROOT / "docs" / "topics.md").read_text()
    readme = (ROOT / "README.md").read_text()
    for topic in ALL_TOPICS:
        assert f"`clusterpulse.{topic.suffix}`" in page
        assert f"clusterpulse.{topic.suffix}" in readme
    for schema in SCHEMAS.values():
        for column in schema.columns:
            assert f"| `{column.name}` | `{column.dtype}` | {column.group} |" in page, column
    for header in (DLQ_REASON, DLQ_TOPIC, DLQ_PARTITION, DLQ_OFFSET):
        assert header in page


def test_docs_point_only_inside_the_repository() -> None:
    """Every file a page links or names in backticks exists here; nothing cites the private spec."""
    import re

    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    readme = pages[0].read_text()
    for doc in ("docs/scenarios.md", "docs/inventory.md", "docs/operations.md", "docs/topics.md"):
        assert f"]({doc})" in readme, f"README does not link {doc}"
    for page in pages:
        text = page.read_text()
        assert "specs/" not in text, f"{page.name} cites specs/, which is not in the repository"
        links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
        named = re.findall(r"`((?:pipeline|producers|sql|scenarios|docs|bench|tests)/[\w./-]+\.\w+)`", text)
        for target in links + named:
            if "://" in target:
                continue
            assert (page.parent / target).exists() or (ROOT / target).exists(), f"{page.name}: {target} is missing"


def test_readme_is_short_and_lists_every_page() -> None:
    """The README is the front page (at most 200 lines, issue 26); everything else is a page under
    docs/, and its "Documentation" list links each one."""
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"](docs/{page.name})" in readme, f"README does not link docs/{page.name}"
