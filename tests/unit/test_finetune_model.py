"""The offline fine-tunable model and the training-file rules, without a broker."""

from __future__ import annotations

import json

import pytest

from services.finetune import data, samples, training
from shared import tuned_model as model
from shared.offline_text import NO_ANSWER
from shared.tuned_model import Example

pytestmark = pytest.mark.unit


def test_token_f1_is_multiset_overlap() -> None:
    assert model.token_f1("Category: Billing.", "category: billing.") == 1.0
    assert model.token_f1("", "anything") == 0.0
    # 2 of 3 answer tokens match, 2 of 4 reference tokens: P=2/3, R=1/2.
    assert model.token_f1("a b c", "a b d e") == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))


def test_training_lowers_the_loss_and_beats_the_base_model_on_unseen_prompts() -> None:
    train = samples.examples(200, seed=7)
    held_out = samples.examples(100, seed=99, unseen=train)
    result = training.train(train, epochs=3, seed=1)
    assert result.losses[0] > result.losses[-1] * 2
    tuned = training.mean_f1(result.model.answer, held_out)
    base = training.mean_f1(lambda _: NO_ANSWER, held_out)
    echo = training.mean_f1(lambda prompt: prompt, held_out)
    assert tuned > 0.85 and tuned > base + 0.6 and tuned > echo + 0.6
    # One epoch learns less than three: the epochs are real passes of training.
    one = training.train(train, epochs=1, seed=1)
    assert training.mean_f1(one.model.answer, held_out) < tuned


def test_it_generalises_to_a_combination_it_never_saw() -> None:
    # No training example asks to return a Pico drone; the answer must still be a return.
    train = [
        e
        for e in samples.examples(300, seed=7)
        if not ("Pico drone" in e.prompt and "Returns" in e.completion)
    ]
    tuned = training.train(train, epochs=3, seed=1).model
    answer = tuned.answer("Customer message: I want to return my Pico drone, no rush.")
    assert answer.startswith("Category: Returns. Priority: normal. Team: returns desk.")
    assert answer not in {e.completion for e in train}


def test_a_saved_model_answers_the_same_and_loads_without_pickle() -> None:
    train = samples.examples(60, seed=3)
    tuned = training.train(train, epochs=2, seed=2).model
    again = model.TunedModel.from_bytes(tuned.to_bytes())
    prompts = [e.prompt for e in samples.examples(10, seed=5)]
    assert [tuned.answer(p) for p in prompts] == [again.answer(p) for p in prompts]


def test_on_epoch_can_stop_training() -> None:
    seen: list[int] = []

    def stop_after_two(epoch: int, loss: float) -> bool:
        seen.append(epoch)
        return epoch < 2

    with pytest.raises(model.Cancelled):
        training.train(samples.examples(30), epochs=10, on_epoch=stop_after_two)
    assert seen == [1, 2]


def _line(prompt: object, completion: object) -> str:
    return json.dumps({"prompt": prompt, "completion": completion})


def test_training_files_are_checked_line_by_line_without_echoing_content() -> None:
    good = [_line(f"q{i}", f"a{i}") for i in range(12)]
    assert len(data.parse("\n".join(good) + "\n\n")) == 12
    secret_line = '{"prompt": "AKIAIOSFODNN7EXAMPLE", "completion": 3}'
    cases = {
        "line 3: not valid JSON": [*good[:2], "{nope", *good[2:]],
        'line 1: expected an object with exactly "prompt" and "completion"': [
            json.dumps({"prompt": "x", "completion": "y", "extra": 1}),
            *good,
        ],
        "line 2: prompt and completion must be strings": [good[0], secret_line, *good[1:]],
        "line 1: prompt and completion must not be empty": [_line(" ", "y"), *good],
        "at least 10 examples": good[:9],
    }
    for expected, lines in cases.items():
        with pytest.raises(data.InvalidData) as raised:
            data.parse("\n".join(lines))
        assert expected in str(raised.value)
        assert "AKIA" not in str(raised.value)
    with pytest.raises(data.InvalidData, match="more than 20 examples"):
        data.parse("\n".join(good * 2), max_examples=20)


def test_scanned_text_splits_back_into_the_same_examples_after_redaction() -> None:
    examples = [
        Example(prompt="multi\nline prompt with a@b.example", completion="ok\n\nfine"),
        Example(prompt="second", completion="mail c@d.example"),
    ]
    text = data.scan_text(examples)
    redacted = text.replace("a@b.example", "[PII:email]").replace("c@d.example", "[PII:email]")
    back = data.from_scanned(redacted, len(examples))
    assert back[0] == Example("multi\nline prompt with [PII:email]", "ok\n\nfine")
    assert back[1] == Example("second", "mail [PII:email]")
    with pytest.raises(data.InvalidData):
        data.from_scanned(text.replace(data.SEPARATOR, " "), len(examples))
