from hypothesis import given
from hypothesis import strategies as st

from app.service.prompts import _CONTROL_TOKEN, OrpheusAdapter, sanitize_text
from app.vocab import END_OF_SPEECH

CONTROL_SPELLINGS = [
    "<custom_token_3>",
    "<|eot_id|>",
    "<|begin_of_text|>",
    "<custom_token_128258>",
    "<|reserved_special_token_2|>",
    "<filler_7>",
]


def test_orpheus_prompt_layout() -> None:
    prompt = OrpheusAdapter().speech_prompt("tara", "Hello world")
    assert prompt.text == (
        "<custom_token_3><|begin_of_text|>tara: Hello world"
        "<|eot_id|><custom_token_4><custom_token_5><custom_token_1>"
    )
    assert OrpheusAdapter.stop_token_ids == (END_OF_SPEECH,)


def test_control_tokens_are_removed_even_when_nested() -> None:
    assert sanitize_text("hi <|eot_id|> there") == "hi there"
    assert sanitize_text("<custom_<custom_token_1>token_3>x") == "x"
    assert sanitize_text("<|eo<|eot_id|>t_id|>") == ""
    assert sanitize_text("a < b > c") == "a < b > c"
    assert sanitize_text("line\nbreak\x00tab\t") == "line break tab"


@given(
    st.lists(
        st.one_of(st.sampled_from(CONTROL_SPELLINGS), st.text(alphabet="<>|_abc123 ", max_size=6)),
        max_size=12,
    )
)
def test_no_control_token_survives(pieces: list[str]) -> None:
    cleaned = sanitize_text("".join(pieces))
    assert _CONTROL_TOKEN.search(cleaned) is None
    prompt = OrpheusAdapter().speech_prompt("tara", "".join(pieces)).text
    # Exactly the adapter's own control tokens, nothing injected by the user.
    assert len(_CONTROL_TOKEN.findall(prompt)) == 6
