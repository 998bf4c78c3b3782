"""The offline provider: extractive answer choice, honesty, and measured token counts."""

from __future__ import annotations

import pytest

from services.llm import offline, tokens
from shared.messages.llm import ChatMessage, InvokeModel
from shared.messages.retrieval import Chunk

pytestmark = pytest.mark.unit

TID = "acme"
REFUNDS = Chunk(
    tenant_id=TID,
    document_id="policies/refunds",
    chunk_id="c1",
    text=(
        "Refunds are issued within 30 days of purchase. Customers must include the order "
        "number. Shipping costs are not refundable."
    ),
)
OFFICE = Chunk(
    tenant_id=TID,
    document_id="handbook/office",
    chunk_id="c2",
    text="The Berlin office opens at 9am on weekdays. Parking is available in the courtyard.",
)


def request(question: str, *chunks: Chunk, max_tokens: int = 500, system: str = "") -> InvokeModel:
    return InvokeModel(
        tenant_id=TID,
        model="claude-haiku-4-5",
        allowed_models=["claude-haiku-4-5"],
        system=system,
        messages=[ChatMessage(role="user", content=question)],
        max_tokens=max_tokens,
        context=list(chunks),
    )


def test_tokenizer_is_the_documented_regex() -> None:
    assert tokens.count_tokens("Don't panic!") == 5
    assert tokens.count_tokens("") == 0
    assert tokens.count_tokens("  spaces\n\tonly  ") == 2
    assert tokens.count_tokens("naïve café, 30€") == 5


def test_truncate_cuts_after_the_nth_token() -> None:
    assert tokens.truncate("one two three four", 2) == ("one two", 2, True)
    assert tokens.truncate("one two", 2) == ("one two", 2, False)
    assert tokens.truncate("one two.", 5) == ("one two.", 3, False)


def test_answer_quotes_the_best_sentence_with_its_source() -> None:
    done = offline.answer(request("How many days do I have to get a refund?", OFFICE, REFUNDS))
    assert done.model == "offline-extractive" and done.provider == "offline"
    assert done.text.startswith(offline.HEADER)
    assert "Refunds are issued within 30 days of purchase." in done.text
    assert "[source: policies/refunds]" in done.text
    assert "Berlin" not in done.text
    assert done.stop_reason == "end_turn"


def test_no_relevant_passage_says_the_documents_have_no_answer() -> None:
    done = offline.answer(request("What is the capital of Mongolia?", OFFICE, REFUNDS))
    assert done.text == offline.NO_ANSWER
    assert offline.answer(request("Where is the refund form?")).text == offline.NO_ANSWER


def test_question_is_found_in_a_gateway_style_prompt() -> None:
    # The gateway pastes the passages into the user message, then "Question: ...".
    prompt = (
        "Context passages from this organisation's own documents:\n\n"
        f"[1] (document handbook/office)\n{OFFICE.text}\n\n---\n\n"
        f"[2] (document policies/refunds)\n{REFUNDS.text}\n\n"
        "Question: When does the office open?"
    )
    req = request(prompt, OFFICE, REFUNDS)
    assert offline.question_of(req).strip() == "When does the office open?"
    done = offline.answer(req)
    assert "The Berlin office opens at 9am on weekdays." in done.text
    assert "Refunds" not in done.text


def test_usage_is_measured_on_the_real_input_and_output() -> None:
    req = request("refund days?", REFUNDS, system="Be brief.")
    done = offline.answer(req)
    expected_input = sum(map(tokens.count_tokens, ["Be brief.", "refund days?", REFUNDS.text]))
    assert done.usage.input_tokens == expected_input
    assert done.usage.output_tokens == tokens.count_tokens(done.text)
    assert done.usage.cache_read_input_tokens == 0


def test_passages_pasted_into_the_prompt_are_counted_once() -> None:
    prompt = f"{REFUNDS.text}\n\nQuestion: refund days?"
    done = offline.answer(request(prompt, REFUNDS))
    assert done.usage.input_tokens == tokens.count_tokens(prompt)


def test_max_tokens_truncates_and_says_so() -> None:
    done = offline.answer(
        request("How many days do I have to get a refund?", REFUNDS, max_tokens=7)
    )
    assert done.usage.output_tokens == 7
    assert tokens.count_tokens(done.text) == 7
    assert done.stop_reason == "max_tokens"
    assert offline.HEADER.startswith(done.text)


def test_stemming_lets_plural_and_tense_meet() -> None:
    assert offline.terms_of("Refunds refunded policies") == ["refund", "refund", "polici"]
    assert offline.terms_of("What is the") == []
