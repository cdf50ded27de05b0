"""The synthetic-reasoning teacher: comments enter a snippet only as added full lines, never as changed code."""

from repro.train.teacher import insert_comments, merge_comments, teacher_corpus, true_intent_corpus

CODE = "def f(xs):\n    out = []\n    for x in xs:\n        out.append(x)\n\n    return out\n"


def test_comments_are_inserted_at_the_indentation_of_their_line():
    expected = ("def f(xs):\n    # start\n    out = []\n    # loop\n    for x in xs:\n"
                "        out.append(x)\n\n    return out\n")
    assert insert_comments(CODE, {1: "start", 2: "loop"}) == expected


def test_the_world_teacher_writes_each_true_intent_at_its_block():
    row = {"text": CODE, "block_starts": [1, 5], "intents": ["collect", "give back"]}
    (text,) = true_intent_corpus([row])
    assert "    # collect\n    out = []" in text and "    # give back\n    return out" in text


def test_a_teacher_may_add_comments_but_never_change_code():
    answer = ("def f(xs):\n    # make the list\n    out = []\n    # copy\n    for x in xs:\n        out.append(x)\n"
              "    return out")
    merged = merge_comments(CODE, answer)
    assert merged == insert_comments(CODE, {1: "make the list", 2: "copy"})
    assert merge_comments(CODE, answer.replace("out.append(x)", "out.append(2 * x)")) is None  # edited
    assert merge_comments(CODE, answer.replace("    return out", "")) is None  # dropped a line
    assert merge_comments(CODE, answer + "\nprint(f([1]))") is None  # added code
    assert merge_comments(CODE, answer + "\n# trailing") is None  # a comment on nothing
    assert merge_comments(CODE, CODE) == CODE


def test_a_teacher_model_runs_and_its_rewrites_are_counted(tmp_path):
    """A tiny model as the teacher: whatever it answers, the corpus keeps every snippet's code."""
    from repro.core.scale import ModelSpec, SyntheticConfig, TinyModelConfig, TokenizerConfig
    from repro.train.pretrain import init_model, train_tokenizer

    snippets = [CODE.replace("xs", f"v{i}") for i in range(5)]
    tokenizer = train_tokenizer(snippets * 20, TokenizerConfig(vocab_size=300), tmp_path / "teacher")
    init_model(tokenizer, TinyModelConfig(32, 1, 2, 64, 256), seed=0).save_pretrained(tmp_path / "teacher")
    cfg = SyntheticConfig(teacher=ModelSpec("t", "t", "r"), instruction="Comment this.", max_new_tokens=8,
                          batch_size=2)
    texts, counts = teacher_corpus(snippets, str(tmp_path / "teacher"), cfg)
    assert counts == {"snippets": 5, "commented": 0, "rejected_as_rewritten": 5} and texts == snippets
