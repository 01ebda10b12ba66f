"""The upload options (`text_layer`, `dedup`) read from form fields and query parameters, and
the one dedup key every upload route builds (pure functions)."""

from __future__ import annotations

import hashlib

import pytest

from ocr_gateway.core.errors import InvalidField
from ocr_gateway.core.settings import Settings
from ocr_gateway.db.models import TextLayer
from ocr_gateway.uploads.dedup import dedup_key, parse_dedup
from ocr_gateway.uploads.media import MediaType
from ocr_gateway.uploads.options import UploadOptions, read_options

SETTINGS = Settings(_env_file=None)
AUTO_SETTINGS = Settings(_env_file=None, text_layer="auto")
A = hashlib.sha256(b"a").digest()
B = hashlib.sha256(b"b").digest()


def test_defaults_come_from_the_settings() -> None:
    assert read_options({}, {}, SETTINGS) == UploadOptions(TextLayer.OFF, dedup=True)
    assert read_options({}, {}, AUTO_SETTINGS).text_layer == TextLayer.AUTO
    assert read_options({"text_layer": ""}, {}, AUTO_SETTINGS).text_layer == TextLayer.AUTO


def test_a_form_field_wins_over_the_query() -> None:
    options = read_options(
        {"text_layer": "off", "dedup": "true"}, {"text_layer": "auto", "dedup": "false"}, SETTINGS
    )
    assert options == UploadOptions(TextLayer.AUTO, dedup=False)
    assert read_options({"text_layer": "AUTO "}, {}, SETTINGS).text_layer == TextLayer.AUTO


@pytest.mark.parametrize(("word", "value"), [("false", False), ("0", False), ("True", True)])
def test_dedup_words(word: str, value: bool) -> None:
    assert parse_dedup(word) is value


@pytest.mark.parametrize(
    ("query", "field"), [({"text_layer": "on"}, "text_layer"), ({"dedup": "perhaps"}, "dedup")]
)
def test_unreadable_values_are_refused_with_their_name(query: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidField, match=field):
        read_options(query, {}, SETTINGS)


def test_images_have_no_text_layer() -> None:
    options = UploadOptions(TextLayer.AUTO)
    assert options.key_options(MediaType.PNG) == {}
    assert options.text_layer_for(MediaType.PNG) == TextLayer.OFF
    assert options.key_options(MediaType.PDF) == {"text_layer": "auto"}
    assert options.text_layer_for(MediaType.PDF) == TextLayer.AUTO


def test_the_key_changes_with_kind_options_files_and_their_order() -> None:
    key = dedup_key("ocr", {"text_layer": "off"}, A)
    assert len(key) == 32
    assert key == dedup_key("ocr", {"text_layer": "off"}, A)
    others = {
        dedup_key("images", {"text_layer": "off"}, A),
        dedup_key("ocr", {"text_layer": "auto"}, A),
        dedup_key("ocr", {}, A),
        dedup_key("ocr", {"text_layer": "off"}, B),
        dedup_key("ocr", {"text_layer": "off"}, A, B),
        dedup_key("ocr", {"text_layer": "off"}, B, A),
    }
    assert key not in others and len(others) == 6
    # The options' order does not matter.
    assert dedup_key("x", {"a": "1", "b": "2"}, A) == dedup_key("x", {"b": "2", "a": "1"}, A)
    with pytest.raises(ValueError):
        dedup_key("ocr", {})
