"""docs/topics.md documents what the code defines."""

from pipeline.schemas import SCHEMAS
from pipeline.topics import ALL_TOPICS, DLQ_OFFSET, DLQ_PARTITION, DLQ_REASON, DLQ_TOPIC
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
