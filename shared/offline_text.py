"""What the offline provider (services.llm.offline) says when the documents searched hold
no answer. Shared because finetune scores that answer as its untuned baseline."""

NO_ANSWER = (
    "Offline mode (no language model was used): the documents searched for this "
    "question do not contain an answer to it."
)
