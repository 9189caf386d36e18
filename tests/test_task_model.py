"""The task corpus (course/tasks.py) and the "tasks" course model (solutions/task_model.py).

The real model trains for about a minute (`make model`); here a one-layer model trains
for a few steps on a few thousand characters, in a temporary cache folder. Oracles:
answers recomputed independently of ``solve`` (slicing, ``str.upper``, ``int``), the
arithmetic of every written step, the files the pipeline promises, bit-identical
weights from two trainings, and a cache that a second call reuses.
"""

from __future__ import annotations

import random
import re
import string
from pathlib import Path

import pytest
import torch

from course import model as course_model_public
from course import tasks
from course.tasks import (
    ALPHABET,
    TASKS,
    CharTokenizer,
    Example,
    addition_steps,
    build_prompt,
    episode_text,
    make_corpus,
    make_episode,
    make_eval_set,
    parse_answer,
)
from solutions import course_model, task_model
from solutions.course_model import PINNED_KERNELS, ModelConfig
from solutions.task_model import TaskCorpusConfig, greedy_completions, train_task_model

TINY = ModelConfig(
    d_model=16, n_layers=1, n_heads=2, max_seq_len=64, steps=5, batch_size=4,
    max_lr=1e-2, min_lr=1e-3, warmup_steps=2, threads=1,
)  # fmt: skip
TINY_CORPUS = TaskCorpusConfig(
    train_chars=4000, val_chars=1000, episode_chars=64, repeat_chars=2000, repeat_steps=2
)
LINE = re.compile(r"^([^ ]+)(?: => ([^>]+))? -> ([^ ]+)$")  # input, work, output
PAIR = re.compile(r"^([a-z])([a-z])$")  # a cipher line: a letter and its image


def parse_line(line: str) -> tuple[str, str | None, str]:
    """(input, work, output) of one line of an episode, in either format."""
    pair = PAIR.match(line)
    return (pair.group(1), None, pair.group(2)) if pair else LINE.match(line).groups()


def check_steps(a: int, b: int, work: str, answer: str) -> None:
    """Every step adds the right digits and the carry of the step before it."""
    xs, ys = str(a)[::-1], str(b)[::-1]
    carry = 0
    steps = work.split(" ")
    assert len(steps) == max(len(xs), len(ys))
    for i, step in enumerate(steps):
        x, y, c, s = map(int, re.fullmatch(r"(\d)\+(\d)\+(\d)=(\d+)", step).groups())
        assert x == (int(xs[i]) if i < len(xs) else 0)
        assert y == (int(ys[i]) if i < len(ys) else 0)
        assert c == carry and s == x + y + c
        carry = s // 10
    assert int(answer) == a + b


def test_tokenizer_is_exact_and_refuses_other_characters():
    tok = CharTokenizer()
    text = "ab -> BA\n12+3 => 2+3+0=5 1+0+0=1 -> 15\n\n"
    assert tok.decode(tok.encode(text)) == text
    assert tok.vocab_size == len(ALPHABET) and tok.encode("\n") == [0]
    assert tok.decode(torch.tensor(tok.encode("xyz"))) == "xyz"
    with pytest.raises(ValueError, match="not in the alphabet"):
        tok.encode("a.b")


def fitting_tasks(lines: list[tuple[str, str | None, str]]) -> set[str]:
    """The tasks that every line of an episode fits, recomputed without ``solve``."""
    shift = str.maketrans(string.ascii_lowercase, string.ascii_lowercase[1:] + "a")
    rules = {
        "copy": lambda x: x,
        "reverse": lambda x: x[::-1],
        "upper": str.upper,
        "shift": lambda x: x.translate(shift),
        "count": lambda x: str(len(x)),
        "add": lambda x: str(sum(int(n) for n in x.split("+"))) if "+" in x else None,
        "repeat": lambda x: x if len(x) >= 8 and len(set(x)) == len(x) else None,
    }
    fits = {task for task, rule in rules.items() if all(rule(x) == y for x, _, y in lines)}
    pairs: dict[str, str] = {}  # a cipher: one image per letter, one letter per image
    ok = all(len(x) == len(y) and x.isalpha() for x, _, y in lines)
    for x, _, y in lines if ok else []:
        for c, d in zip(x, y, strict=True):
            ok = ok and pairs.setdefault(c, d) == d
    if ok and len(set(pairs.values())) == len(pairs):
        fits.add("map")
    return fits


def test_corpus_is_deterministic_and_every_line_is_right():
    """Oracle: every episode fits one task, re-solved by hand; every step adds up."""
    mix = {**tasks.MIX, ("repeat", False): 2.0}  # the default MIX and the repeat episodes
    text = make_corpus(20_000, seed=3, episode_chars=128, mix=mix)
    assert make_corpus(20_000, seed=3, episode_chars=128, mix=mix) == text
    assert make_corpus(20_000, seed=4, episode_chars=128, mix=mix) != text
    assert len(text) >= 20_000 and set(text) <= set(ALPHABET)
    episodes = text.split("\n\n")
    assert episodes[-1] == "" and all(len(e) + 1 <= 128 for e in episodes)
    seen: set[str] = set()
    for episode in episodes[:-1]:
        raw = episode.split("\n")
        lines = [parse_line(line) for line in raw]
        for x, work, y in lines:
            if work is not None:
                check_steps(*map(int, x.split("+")), work, y)
        fits = fitting_tasks(lines)
        assert fits, episode
        paired = [PAIR.match(line) is not None for line in raw]  # one format per episode
        assert all(paired) or not any(paired), episode
        # pairs are the cipher's, and the cipher is never written with an arrow
        assert ("map" in fits) if all(paired) else bool(fits - {"map"}), episode
        seen |= fits
    assert seen == set(tasks.TRAIN_TASKS)


def test_eval_items_are_right_and_the_cipher_is_a_consistent_bijection():
    for task in TASKS:
        items = make_eval_set(task, 20, max_shots=8, seed=5)
        assert items == make_eval_set(task, 20, max_shots=8, seed=5)
        for item in items:
            assert len(item.examples) == 8
            for e in [*item.examples, item.query]:
                expected = {
                    "copy": e.input,
                    "reverse": e.input[::-1],
                    "upper": e.input.upper(),
                    "count": str(len(e.input)),
                }.get(task)
                if expected is not None:
                    assert e.output == expected
                if task == "add":
                    assert int(e.output) == sum(map(int, e.input.split("+")))
                if task == "map":
                    assert "".join(item.mapping[c] for c in e.input) == e.output
            if task == "map":
                assert sorted(item.mapping) == sorted(item.mapping.values())
                assert sorted(item.mapping) == list(string.ascii_lowercase)
                pairs = {}  # letter -> image, read off the lines: never two images
                for e in [*item.examples, item.query]:
                    for c, d in zip(e.input, e.output, strict=True):
                        assert pairs.setdefault(c, d) == d


def test_repeat_strings_are_long_copies_without_repeated_letters():
    """Oracle: the output is the input; 8 to 20 distinct letters, so a head that copies
    by position within the line (3-letter words) cannot do it, only an induction head."""
    lengths = set()
    for item in make_eval_set("repeat", 50, 2, seed=5):
        for e in [*item.examples, item.query]:
            assert e.output == e.input and e.input.isalpha() and e.input.islower()
            assert 8 <= len(e.input) <= 20 and len(set(e.input)) == len(e.input)
            lengths.add(len(e.input))
    assert len(lengths) > 5
    text = make_corpus(3000, seed=0, mix={("repeat", False): 1.0})
    assert all(y == x for x, _, y in (LINE.match(l).groups() for l in text.split("\n") if l))
    assert "repeat" not in TASKS and "repeat" in tasks.TRAIN_TASKS
    assert ("repeat", False) not in tasks.MIX  # the default corpus has none


def test_the_repeat_phase_and_the_token_init_count_in_the_fingerprint_only_where_used(
    monkeypatch,
):
    """A model without a repeat phase or with the default init keeps the fingerprint it
    had before these options existed; with them, they are part of it."""
    no_phase = TaskCorpusConfig(**{**TINY_CORPUS.__dict__, "repeat_steps": 0})
    monkeypatch.setattr(task_model, "TOKEN_INIT", None)
    plain = task_model._fingerprint(TINY, no_phase)
    assert "repeat_steps" not in plain["corpus"] and "token_init" not in plain
    torch.manual_seed(0)
    assert float(task_model._build(TINY).tok_emb.weight.detach().std()) < 0.03  # GPT-2's 0.02
    monkeypatch.setattr(task_model, "TOKEN_INIT", 0.1)
    fingerprint = task_model._fingerprint(TINY, TINY_CORPUS)
    assert fingerprint["token_init"] == 0.1 and fingerprint["corpus"]["repeat_steps"] == 2
    torch.manual_seed(0)
    std = float(task_model._build(TINY).tok_emb.weight.detach().std())
    assert 0.07 < std < 0.13


def test_the_course_recipe_has_a_repeat_phase_two_layers_and_large_token_embeddings():
    """The recipe the chapter's page and closing note describe (an induction head needs two
    layers, and formed only after a repeat phase from token embeddings of std 0.1)."""
    assert task_model.CONFIG.n_layers == 2 and task_model.TOKEN_INIT == 0.1
    assert 0 < task_model.CORPUS.repeat_steps < task_model.CONFIG.steps


def test_addition_steps_are_arithmetically_right():
    rng = random.Random(0)
    for _ in range(300):
        a, b = rng.randint(0, 999), rng.randint(0, 999)
        work, answer = addition_steps(a, b)
        check_steps(a, b, work, answer)
    assert addition_steps(347, 85) == ("7+5+0=12 4+8+1=13 3+0+1=4", "432")
    assert addition_steps(5, 5) == ("5+5+0=10", "10")
    items = make_eval_set("add", 30, 4, steps=True, digits=(3, 3))
    for item in items:
        a, b = map(int, item.query.input.split("+"))
        assert 100 <= a <= 999 and 100 <= b <= 999
        check_steps(a, b, item.query.work, item.query.output)
        assert all(e.work is not None for e in item.examples)


def test_prompts_and_parsing_round_trip():
    """Oracle: a prompt followed by the right continuation is the episode's own text."""
    assert build_prompt([Example("ab", "ba")], "xyz") == "\nab -> ba\nxyz -> "
    pair = Example("s", "e", arrow=tasks.MAP_ARROW)
    assert build_prompt([pair], Example("w", "?", arrow=tasks.MAP_ARROW)) == "\nse\nw"
    assert build_prompt([pair], "w") == "\nse\nw -> "  # a bare string takes ARROW
    for task, steps in [(t, False) for t in TASKS] + [("add", True)]:
        for item in make_eval_set(task, 10, 3, steps=steps):
            prompt = build_prompt(item.examples, item.query, steps)
            text = "\n" + episode_text([*item.examples, item.query])
            assert text.startswith(prompt)
            continuation = text[len(prompt) :]
            assert parse_answer(continuation + "ab -> ba\n") == item.query.output
    assert parse_answer("7+5+0=12 4+8+1=13 3+0+1=4 -> 432\n") == "432"
    assert parse_answer("7+5+0=12 4+8") == "7+5+0=12 4+8"  # no answer: never right
    examples = make_episode(random.Random(1), "map", 5)
    assert len({c for e in examples for c in e.input}) <= tasks.MAP_LETTERS[1]


def test_the_chapter_few_shot_prompt_with_each_task_template_writes_build_prompt():
    """Oracle: the reference ``few_shot_prompt`` of chapter 10 with ``example_template``
    (what the notebook uses) gives the same text as ``build_prompt``, for every task."""
    from solutions.prompting import few_shot_prompt

    for task in TASKS:
        for item in make_eval_set(task, 5, 3, seed=2):
            for k in (0, 1, 3):
                shots = [(e.input, e.output) for e in item.examples[:k]]
                text = few_shot_prompt(shots, item.query.input, tasks.example_template(task))
                assert "\n" + text == build_prompt(item.examples[:k], item.query)
    with pytest.raises(ValueError, match="task must be one of"):
        tasks.example_template("sort")


def test_greedy_completions_equal_a_plain_greedy_loop():
    """Oracle: one prompt at a time, the whole sequence through the model at every step."""
    torch.manual_seed(0)
    model = task_model._build(TINY).eval()
    tok = CharTokenizer()
    prompts = ["\nab -> ba\ncd -> ", "\nxy -> ", "\nab -> ba\nef -> ", "\n1+2 => "]
    got = greedy_completions(model, tok, prompts, max_new_tokens=6, batch_size=2)
    for prompt, completion in zip(prompts, got, strict=True):
        ids = torch.tensor([tok.encode(prompt)])
        for _ in range(6):
            nxt = model(ids)[0, -1].argmax()
            ids = torch.cat([ids, nxt.view(1, 1)], dim=1)
            if int(nxt) == 0:
                break
        assert completion == tok.decode(ids[0, len(prompt) :].tolist())


def test_attention_weights_and_induction_scores_have_their_shapes():
    torch.manual_seed(0)
    model = task_model._build(TINY).eval()
    ids = torch.tensor([CharTokenizer().encode("\nabc -> cba\n")])
    (w,) = task_model.attention_weights(model, ids)
    assert w.shape == (1, 2, 12, 12)
    assert torch.allclose(w.sum(-1), torch.ones(1, 2, 12)) and float(w.triu(1).abs().max()) == 0
    ids = task_model.repeated_cipher_lines(CharTokenizer(), pairs=5, n=3)  # period 15
    scores = task_model.induction_scores(model, ids, 15)
    assert scores.shape == (1, 2) and bool(((scores >= 0) & (scores <= 1)).all())


def test_the_probe_texts_repeat_with_their_period():
    """Oracle: slicing; and the cipher lines re-read as text, letter by letter."""
    tok = CharTokenizer()
    ids = task_model.repeated_cipher_lines(tok, pairs=5, n=3, seed=1)
    assert ids.shape == (3, 31) and torch.equal(ids[:, 15:], ids[:, :16])
    assert torch.equal(ids, task_model.repeated_cipher_lines(tok, pairs=5, n=3, seed=1))
    for row in ids:
        lines = tok.decode(row.tolist())[1:].split("\n")[:5]
        assert all(PAIR.match(line) for line in lines)
        assert len({line[0] for line in lines}) == 5 and len({line[1] for line in lines}) == 5
    letters = task_model.repeated_letters(tok, period=7, n=2)
    assert letters.shape == (2, 14) and torch.equal(letters[:, :7], letters[:, 7:])
    assert tok.decode(letters[0].tolist()).isalpha()
    with pytest.raises(ValueError, match="pairs"):
        task_model.repeated_cipher_lines(tok, pairs=27)


def test_an_ablated_head_is_a_zeroed_slice_of_the_output_projection():
    """Oracle: a copy of the model whose out_proj columns of that head are zero; the
    model is itself again after the block, and the cached decoding sees the ablation."""
    torch.manual_seed(0)
    model = task_model._build(TINY).eval()
    ids = torch.tensor([CharTokenizer().encode("\nabc -> cba\nxyz -> ")])
    before = model(ids)
    cut = task_model._build(TINY).eval()
    cut.load_state_dict(model.state_dict())
    d_head = cut.blocks[0].attn.d_head
    with torch.no_grad():
        cut.blocks[0].attn.out_proj.weight[:, d_head : 2 * d_head] = 0
    with task_model.heads_ablated(model, [(0, 1)]):
        assert torch.allclose(model(ids), cut(ids), atol=1e-6)
        assert not torch.allclose(model(ids), before, atol=1e-4)
        tok = CharTokenizer()
        ablated = greedy_completions(model, tok, ["\nab -> ba\ncd -> "], 6)
    assert torch.equal(model(ids), before)
    assert ablated == greedy_completions(cut, tok, ["\nab -> ba\ncd -> "], 6)


def test_training_is_deterministic_and_the_cache_is_reused(tmp_path: Path, monkeypatch):
    model, tok, meta = train_task_model(tmp_path / "a", config=TINY, corpus=TINY_CORPUS,
                                        progress=False)  # fmt: skip
    assert {"tasks.pt", "tasks.json"} == {p.name for p in (tmp_path / "a").iterdir()}
    assert meta["val_loss"] > 0 and meta["fingerprint"]["alphabet"] == ALPHABET
    again, _, _ = train_task_model(tmp_path / "b", config=TINY, corpus=TINY_CORPUS,
                                   progress=False)  # fmt: skip
    first = (tmp_path / "a" / "tasks.pt").read_bytes()
    assert first == (tmp_path / "b" / "tasks.pt").read_bytes()  # bit for bit

    def no_training(*args, **kwargs):
        raise AssertionError("the cached model should have been used")

    monkeypatch.setattr(task_model, "train_fast", no_training)
    cached, _, meta2 = train_task_model(tmp_path / "a", config=TINY, corpus=TINY_CORPUS,
                                        progress=False)  # fmt: skip
    assert meta2 == meta
    for p, q in zip(model.parameters(), cached.parameters(), strict=True):
        assert torch.equal(p, q)
    other = ModelConfig(**{**TINY.__dict__, "steps": 6})
    assert task_model._fingerprint(other, TINY_CORPUS) != meta["fingerprint"]
    more = TaskCorpusConfig(**{**TINY_CORPUS.__dict__, "seed": 1})
    assert task_model._fingerprint(TINY, more) != meta["fingerprint"]
    longer = TaskCorpusConfig(**{**TINY_CORPUS.__dict__, "repeat_steps": 3})
    assert task_model._fingerprint(TINY, longer) != meta["fingerprint"]
    with pytest.raises(AssertionError, match="cached model"):
        train_task_model(tmp_path / "a", config=other, corpus=TINY_CORPUS, progress=False)


def test_the_student_loader_reads_a_bundled_folder(tmp_path: Path, monkeypatch):
    """Oracle: the trained GPT's logits, from the copy the student side loads."""
    model, tok, _ = train_task_model(tmp_path, config=TINY, corpus=TINY_CORPUS, progress=False)
    monkeypatch.setattr(course_model_public, "_solutions_present", lambda: False)
    loaded, loaded_tok = course_model_public.load_task_model(directory=tmp_path)
    ids = torch.tensor([tok.encode("\nab -> ba\ncd -> ")])
    assert loaded_tok.alphabet == ALPHABET
    assert torch.allclose(loaded(ids), model(ids), atol=1e-5)
    with pytest.raises(FileNotFoundError, match="make model"):
        course_model_public.load_task_model(directory=tmp_path / "empty")


def test_training_reads_the_repeat_text_first_then_the_mix(tmp_path: Path, monkeypatch):
    """Oracle: the calls of the training loop, the texts they read and one optimizer."""
    calls = []
    real = task_model.train_fast

    def spy(model, data, steps, **kwargs):
        calls.append((CharTokenizer().decode(data[:400]), steps, kwargs["optimizer"]))
        return real(model, data, steps, **kwargs)

    monkeypatch.setattr(task_model, "train_fast", spy)
    _, _, meta = train_task_model(tmp_path, config=TINY, corpus=TINY_CORPUS, progress=False)
    assert [steps for _, steps, _ in calls] == [2, 3] and calls[0][2] is calls[1][2]
    lines = [l for l in calls[0][0].split("\n")[1:-1] if l]  # whole lines of the first text
    assert lines and all(LINE.match(l).group(1) == LINE.match(l).group(3) for l in lines)
    assert all(len(LINE.match(l).group(1)) >= 8 for l in lines)
    assert calls[1][0] != calls[0][0] and meta["tokens_seen"] == 5 * 4 * 64


class _Stop(Exception):
    """Raised by a stand-in to stop training where the test has seen enough."""


def test_an_unpinned_process_trains_the_default_model_in_a_pinned_child(tmp_path, monkeypatch):
    for name in PINNED_KERNELS:
        monkeypatch.delenv(name, raising=False)
    calls = []
    monkeypatch.setattr(course_model, "train_in_pinned_child", lambda *args: calls.append(args))
    with pytest.raises(RuntimeError, match="left no up-to-date model"):
        train_task_model(tmp_path, progress=False)  # the stand-in child wrote nothing
    assert calls == [("tasks", tmp_path, False)]


def test_a_pinned_process_or_a_custom_recipe_trains_in_process(tmp_path, monkeypatch):
    def child(*args):
        raise AssertionError("no child process expected")

    def stop(*args, **kwargs):
        raise _Stop

    monkeypatch.setattr(course_model, "train_in_pinned_child", child)
    monkeypatch.setattr(task_model, "corpus_ids", stop)  # the first step of training
    for name, value in PINNED_KERNELS.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(_Stop):
        train_task_model(tmp_path, progress=False)
    monkeypatch.delenv("MKL_CBWR")
    with pytest.raises(_Stop):
        train_task_model(tmp_path, config=TINY, corpus=TINY_CORPUS, progress=False)


def test_the_pinned_child_is_make_models_command_with_the_pinned_kernels(tmp_path, monkeypatch):
    seen = {}

    def run(command, env, check):
        seen.update(command=command, env=env, check=check)

    monkeypatch.setattr(course_model.subprocess, "run", run)
    course_model.train_in_pinned_child("tasks", tmp_path, True)
    assert seen["command"][1:] == [
        "-m", "solutions.course_model", "--size", "tasks", "--cache-dir", str(tmp_path), "--force",
    ]  # fmt: skip
    assert seen["check"] and all(seen["env"][k] == v for k, v in PINNED_KERNELS.items())


def test_the_makefile_pins_the_kernels_that_course_model_names():
    """make model/book/test export PINNED_KERNELS: one list, read from the Makefile."""
    text = (Path(__file__).resolve().parents[1] / "Makefile").read_text(encoding="utf-8")
    exported = dict(re.findall(r"^model book test: export (\w+) := (\S+)$", text, re.M))
    assert exported == PINNED_KERNELS


def test_uniform_score_is_the_score_of_evenly_spread_causal_attention():
    from solutions.prompting import induction_scores as head_scores

    T, period = 97, 48
    causal = torch.ones(T, T, dtype=torch.float64).tril()
    even = causal / causal.sum(dim=-1, keepdim=True)  # row t: 1/(t+1) on positions 0..t
    assert task_model.uniform_score(period, T) == pytest.approx(float(head_scores(even, period)))


def test_induction_heads_are_those_above_ten_times_uniform():
    scores = torch.tensor([[0.0, 0.11, 0.09], [0.5, 0.101, 0.0]])
    assert task_model.induction_heads(scores, 0.01) == [(0, 1), (1, 0), (1, 1)]
    assert task_model.induction_heads(scores, 0.1) == []
