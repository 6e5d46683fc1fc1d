"""prepare_text: normalization (when asked) then segmentation, in one call."""

from __future__ import annotations

from app.text.frontend import SpokenText, prepare_text


def test_normalizes_then_segments() -> None:
    spoken = prepare_text(
        "It is 10:30. <sigh> We left.", normalize=True, max_chars=200, first_max_chars=100
    )
    assert spoken == SpokenText(
        "It is ten thirty. <sigh> We left.", ["It is ten thirty.", "<sigh> We left."]
    )


def test_without_normalization_the_text_is_segmented_as_written() -> None:
    spoken = prepare_text(
        "It is 10:30. We left.", normalize=False, max_chars=200, first_max_chars=5
    )
    assert spoken == SpokenText("It is 10:30. We left.", ["It is", "10:30. We left."])


def test_nothing_to_say_gives_no_segments() -> None:
    assert prepare_text("😀", normalize=True, max_chars=200, first_max_chars=100).segments == []
