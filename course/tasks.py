"""Small text tasks written as text: the corpus of the "tasks" course model (chapter 10).

A language model learns from a stream of text. Here the text is made of *episodes*:
one episode shows a few examples of one task, one example per line, and never names
the task, so a model that continues an episode must infer the task from the lines
above. That is in-context learning, in a form a laptop can train. Episodes are
separated by an empty line::

    kfq -> qfk          <- an episode of reverse
    abz -> zba

    se                  <- an episode of map: this episode's cipher sends s to e, ...
    wj
    se

The template of one example is ``"{input} -> {output}\n"``; an example with worked
steps (the addition task) is ``"{input} => {work} -> {output}\n"``; a cipher example
is a letter and its image side by side, ``"{input}{output}\n"`` (``MAP_ARROW`` is
empty). So a prompt that ends with ``" -> "`` asks for the answer directly, one that
ends with ``" => "`` asks for the steps first, one that ends with a lone letter asks
for its image, and in every case the answer is what follows the last ``"-> "`` of
the line, if any (``parse_answer``).

The tasks (``TASKS``), on words of three lowercase letters unless said otherwise:

- ``copy``: ``abc -> abc``; ``reverse``: ``abc -> cba``; ``upper``: ``abc -> ABC``;
  ``shift``: every letter by its successor, ``abz -> bca``;
- ``map``: a substitution cipher drawn at random for each episode (a permutation of
  the 26 letters), shown one letter at a time on a handful of letters (4 to 7), so the
  lines above are the only way to know it: the more examples, the more letters are
  known. Written side by side (``se``), the lookup of a letter's image is the pattern
  an induction head completes: find the earlier occurrence of the current token and
  copy the token that followed it. Cipher episodes have more lines (``MAP_EXAMPLES``);
- ``count``: the number of letters of a word of 1 to 9 letters, ``abcab -> 5``;
- ``add``: addition of two numbers of the same number of digits (1 to 3),
  ``347+285 -> 632``, or with the steps written digit by digit from the right, each
  with the carry it takes in: ``347+285 => 7+5+0=12 4+8+1=13 3+2+1=6 -> 632``.

A training-only task, ``repeat`` (in ``TRAIN_TASKS``, not in ``TASKS``), copies a
string of 8 to 20 distinct letters: too long for a head that copies by position in
the line, it takes an induction head. The tasks model reads episodes of it alone for
its first training steps (``solutions.task_model``); they are not in ``MIX``.

Everything is deterministic: the generators take a seeded ``random.Random``. The
vocabulary is a fixed alphabet of characters (``ALPHABET``), one id per character,
so ``CharTokenizer`` is exact and trivial.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field

__all__ = [
    "ALPHABET",
    "TASKS",
    "CharTokenizer",
    "EvalItem",
    "Example",
    "addition_steps",
    "build_prompt",
    "episode_text",
    "example_template",
    "format_example",
    "make_corpus",
    "make_episode",
    "make_eval_set",
    "parse_answer",
    "solve",
]

# Id 0 is the newline: an example ends with it and an empty line ends an episode.
ALPHABET = "\n +-=>" + string.digits + string.ascii_lowercase + string.ascii_uppercase
TASKS = ("copy", "reverse", "upper", "shift", "map", "count", "add")
TRAIN_TASKS = (*TASKS, "repeat")  # repeat is trained on, not in the few-shot tables
LETTER_TASKS = ("copy", "reverse", "upper", "shift", "map", "count")
ARROW = " -> "  # before the answer
MAP_ARROW = ""  # a cipher example is the letter and its image, side by side: "se"
WORK = " => "  # before the worked steps
MAP_LETTERS = (4, 7)  # a cipher episode uses this many distinct letters (inclusive)
WORD_LENGTH = (3, 3)  # letters of a word of copy, reverse, upper, shift (inclusive)
MAP_WORD_LENGTH = (1, 1)  # the cipher is shown one letter at a time
COPY_LENGTH = (3, 3)
REPEAT_LENGTH = (8, 20)  # letters of a repeat string, all different
COUNT_LENGTH = (1, 9)
ADD_DIGITS = (1, 3)


class CharTokenizer:
    """One id per character of ``alphabet``: ``encode(str) -> list[int]``, ``decode``.

    ``decode(encode(s)) == s`` for every string over the alphabet; any other
    character raises ValueError (nothing is silently dropped).
    """

    def __init__(self, alphabet: str = ALPHABET) -> None:
        if len(set(alphabet)) != len(alphabet):
            raise ValueError("the alphabet has a repeated character")
        self.alphabet = alphabet
        self.ids = {c: i for i, c in enumerate(alphabet)}
        self.vocab_size = len(alphabet)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.ids[c] for c in text]
        except KeyError as error:
            raise ValueError(f"character {error.args[0]!r} is not in the alphabet") from None

    def decode(self, ids: list[int]) -> str:
        """Ids (a list, or anything with ``tolist()``) back to text."""
        ids = ids.tolist() if hasattr(ids, "tolist") else ids
        return "".join(self.alphabet[i] for i in ids)


@dataclass(frozen=True)
class Example:
    """One line of an episode: ``input -> output``, or ``input => work -> output``."""

    input: str
    output: str
    work: str | None = None  # the worked steps (addition only), None for a direct answer
    arrow: str = ARROW  # between input and output: ARROW, or MAP_ARROW for the cipher


@dataclass(frozen=True)
class EvalItem:
    """A query with its candidate shots: the prompt with n shots uses ``examples[:n]``."""

    task: str
    examples: list[Example]  # all from the same episode (the same cipher for "map")
    query: Example  # query.output is the right answer, query.work the right steps
    mapping: dict[str, str] = field(default_factory=dict)  # the cipher ("map" only)


# ------------------------------------------------------------------------ answers


def shift_letter(c: str) -> str:
    """The successor of a lowercase letter, z -> a."""
    return chr((ord(c) - ord("a") + 1) % 26 + ord("a"))


def addition_steps(a: int, b: int) -> tuple[str, str]:
    """The worked steps of ``a + b`` and the answer, digit by digit from the right.

    Step i adds digit i of both numbers (0 where a number is shorter) and the carry
    that step i-1 gives (0 or 1): ``"7+5+0=12 4+8+1=13 3+0+1=4"`` for 347 + 85, then
    ``"432"``. The answer's digits are the last step's sum followed by the ones
    digits of the earlier steps, last first.
    """
    if a < 0 or b < 0:
        raise ValueError(f"a and b must be >= 0, got {a}, {b}")
    xs, ys = str(a)[::-1], str(b)[::-1]
    steps, carry = [], 0
    for i in range(max(len(xs), len(ys))):
        x = int(xs[i]) if i < len(xs) else 0
        y = int(ys[i]) if i < len(ys) else 0
        total = x + y + carry
        steps.append(f"{x}+{y}+{carry}={total}")
        carry = total // 10
    return " ".join(steps), str(a + b)


def solve(task: str, text: str, mapping: dict[str, str] | None = None) -> str:
    """The right output of ``task`` on the input ``text`` (``mapping`` for "map")."""
    if task in ("copy", "repeat"):
        return text
    if task == "reverse":
        return text[::-1]
    if task == "upper":
        return text.upper()
    if task == "shift":
        return "".join(shift_letter(c) for c in text)
    if task == "map":
        if mapping is None:
            raise ValueError("the map task needs its mapping")
        return "".join(mapping[c] for c in text)
    if task == "count":
        return str(len(text))
    if task == "add":
        a, b = text.split("+")
        return str(int(a) + int(b))
    raise ValueError(f"task must be one of {', '.join(TRAIN_TASKS)}, got {task!r}")


# ------------------------------------------------------------------------ episodes


def _word(rng: random.Random, letters: str, lengths: tuple[int, int]) -> str:
    return "".join(rng.choice(letters) for _ in range(rng.randint(*lengths)))


def _number(rng: random.Random, digits: int) -> int:
    return rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)


def random_mapping(rng: random.Random) -> dict[str, str]:
    """A random permutation of the 26 lowercase letters, as a dict letter -> letter."""
    letters = list(string.ascii_lowercase)
    image = letters[:]
    rng.shuffle(image)
    return dict(zip(letters, image, strict=True))


@dataclass
class _Source:
    """What one episode draws its examples from: the task, the cipher, the letters."""

    task: str
    steps: bool = False
    mapping: dict[str, str] = field(default_factory=dict)
    letters: str = string.ascii_lowercase
    digits: tuple[int, int] = ADD_DIGITS

    def example(self, rng: random.Random) -> Example:
        if self.task == "add":
            digits = rng.randint(*self.digits)  # both numbers have as many digits
            a, b = _number(rng, digits), _number(rng, digits)
            work, answer = addition_steps(a, b)
            return Example(f"{a}+{b}", answer, work if self.steps else None)
        if self.task == "count":
            word = _word(rng, self.letters, COUNT_LENGTH)
        elif self.task == "map":
            word = _word(rng, self.letters, MAP_WORD_LENGTH)
        elif self.task == "copy":
            word = _word(rng, self.letters, COPY_LENGTH)
        elif self.task == "repeat":
            word = "".join(rng.sample(self.letters, rng.randint(*REPEAT_LENGTH)))
        else:
            word = _word(rng, self.letters, WORD_LENGTH)
        arrow = MAP_ARROW if self.task == "map" else ARROW
        return Example(word, solve(self.task, word, self.mapping), arrow=arrow)


def _source(
    rng: random.Random, task: str, steps: bool = False, digits: tuple[int, int] = ADD_DIGITS
) -> _Source:
    if task not in TRAIN_TASKS:
        raise ValueError(f"task must be one of {', '.join(TRAIN_TASKS)}, got {task!r}")
    if steps and task != "add":
        raise ValueError(f"only the add task has worked steps, not {task!r}")
    if task == "map":
        mapping = random_mapping(rng)
        letters = "".join(sorted(rng.sample(string.ascii_lowercase, rng.randint(*MAP_LETTERS))))
        return _Source(task, mapping=mapping, letters=letters)
    return _Source(task, steps=steps, digits=digits)


def make_episode(
    rng: random.Random, task: str, n_examples: int, steps: bool = False
) -> list[Example]:
    """``n_examples`` examples of ``task`` drawn with ``rng`` (one cipher for "map")."""
    source = _source(rng, task, steps)
    return [source.example(rng) for _ in range(n_examples)]


def format_example(example: Example) -> str:
    """One line: ``"abc -> cba\\n"``, ``"3+4 => 3+4+0=7 -> 7\\n"`` with its work, or
    ``"se\\n"`` for a cipher example (its ``arrow`` is empty)."""
    if example.work is None:
        return f"{example.input}{example.arrow}{example.output}\n"
    return f"{example.input}{WORK}{example.work}{example.arrow}{example.output}\n"


def example_template(task: str) -> str:
    """The template of one example of ``task`` with the placeholders ``{input}`` and
    ``{output}``: ``"{input} -> {output}\\n"``, or ``"{input}{output}\\n"`` for the
    cipher. (Addition's worked steps have no placeholder; ``format_example`` writes them.)
    """
    if task not in TRAIN_TASKS:
        raise ValueError(f"task must be one of {', '.join(TRAIN_TASKS)}, got {task!r}")
    return "{input}" + (MAP_ARROW if task == "map" else ARROW) + "{output}\n"


def episode_text(examples: list[Example]) -> str:
    """The lines of an episode, each ending with a newline."""
    return "".join(format_example(e) for e in examples)


# Training mix: the weight of each kind of episode and its number of examples.
MIX: dict[tuple[str, bool], float] = {
    ("copy", False): 1.0,
    ("reverse", False): 0.5,
    ("upper", False): 1.0,
    ("shift", False): 0.5,
    ("map", False): 4.0,
    ("count", False): 1.0,
    ("add", False): 1.0,
    ("add", True): 1.0,
}
EXAMPLES_PER_EPISODE = (2, 12)  # steps episodes take at most a third as many
MAP_EXAMPLES = (4, 40)  # a cipher episode has more, shorter lines
EPISODE_CHARS = 128  # no episode is longer (so it fits the model's context)


def make_corpus(
    n_chars: int,
    seed: int = 0,
    mix: dict[tuple[str, bool], float] | None = None,
    episode_chars: int = EPISODE_CHARS,
) -> str:
    """At least ``n_chars`` characters of episodes, each followed by an empty line.

    The kind of each episode (task, with or without steps) is drawn with the weights
    of ``mix`` (default ``MIX``), its number of examples uniformly in
    ``EXAMPLES_PER_EPISODE`` (a third of it for worked steps, ``MAP_EXAMPLES`` for the
    cipher), cut so that the episode has at most ``episode_chars`` characters.
    """
    rng = random.Random(seed)
    mix = MIX if mix is None else mix
    kinds, weights = list(mix), list(mix.values())
    parts, total = [], 0
    lo, hi = EXAMPLES_PER_EPISODE
    while total < n_chars:
        task, steps = rng.choices(kinds, weights)[0]
        if task == "map":
            n = rng.randint(*MAP_EXAMPLES)
        elif steps:
            n = rng.randint(max(1, lo // 3), max(1, hi // 3))
        else:
            n = rng.randint(lo, hi)
        source = _source(rng, task, steps)
        lines: list[str] = []
        length = 0
        for _ in range(n):
            line = format_example(source.example(rng))
            if length + len(line) > episode_chars:
                break
            lines.append(line)
            length += len(line)
        text = "".join(lines) + "\n"
        parts.append(text)
        total += len(text)
    return "".join(parts)


# --------------------------------------------------------------------- evaluation


def make_eval_set(
    task: str,
    n_items: int,
    max_shots: int = 8,
    seed: int = 1,
    steps: bool = False,
    digits: tuple[int, int] | None = None,
) -> list[EvalItem]:
    """``n_items`` queries of ``task``, each with ``max_shots`` shots of its own episode.

    Shots and query come from one episode (for "map": one cipher, and the query is a
    fresh word over the episode's letters). ``steps`` gives the addition shots and
    query their worked steps; ``digits`` (low, high) fixes how many digits each
    number of an addition has. The seed makes the set reproducible; the default
    differs from the corpus's seed 0.
    """
    rng = random.Random(f"{task}-{seed}-{steps}-{digits}")
    items = []
    for _ in range(n_items):
        source = _source(rng, task, steps, digits or ADD_DIGITS)
        examples = [source.example(rng) for _ in range(max_shots)]
        query = source.example(rng)
        items.append(EvalItem(task, examples, query, dict(source.mapping)))
    return items


def build_prompt(examples: list[Example], query: str | Example, steps: bool = False) -> str:
    """A few-shot prompt: a newline (the end of the empty line before an episode), the
    examples as lines, and the query's line up to the answer (``" -> "``) or, with
    ``steps``, up to the worked steps (``" => "``).

    ``query`` is the query's input, or an ``Example`` whose ``arrow`` (the cipher's is
    empty) ends the prompt; its output is not used.
    ``build_prompt([Example("ab", "ba")], "xyz")`` is ``"\\nab -> ba\\nxyz -> "``.
    """
    if isinstance(query, Example):
        query_input, arrow = query.input, query.arrow
    else:
        query_input, arrow = query, ARROW
    return "\n" + episode_text(examples) + query_input + (WORK if steps else arrow)


def parse_answer(completion: str) -> str:
    """The answer in the text a model wrote after a prompt of ``build_prompt``.

    The first line of ``completion``, after its last ``"-> "`` if there is one (the
    steps come before it), without surrounding spaces: ``"432\\n..."`` and
    ``"7+5+0=12 4+8+1=13 3+0+1=4 -> 432\\n"`` both give ``"432"``.
    """
    line = completion.split("\n", 1)[0]
    if ARROW.strip() + " " in line:
        line = line.rsplit(ARROW.strip() + " ", 1)[1]
    return line.strip()
