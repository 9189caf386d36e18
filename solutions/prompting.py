"""Chapter 10: using language models, the reference implementation.

A trained language model is used without changing its weights: the task is
written into the prompt, and the answer is read off the model's probabilities.

1. ``few_shot_prompt``: render worked examples and the query with a template
   (zero-shot with no examples), ending where the answer should start.
2. ``sequence_logprob``: log p(continuation | prompt), summed over its tokens.
3. ``classify_by_likelihood``: zero-shot classification, each label scored by the
   log-likelihood of its tokens after the prompt (optionally per token).
4. ``majority_vote``: the most common parsed answer, with a fixed tie rule.
5. ``self_consistency``: sample several chains of thought in one batch, parse
   their final answers, majority vote.
6. ``constrained_decode``: greedy decoding restricted to a fixed set of answers.
7. ``bm25_scores``: the Okapi BM25 relevance of each document to a query.
8. ``retrieval_prompt``: retrieve the best passages with BM25, then build a
   prompt that asks for an answer citing them.
9. ``induction_scores``: how much attention goes to the token after the earlier
   copy of the current token (the signature of an induction head).

A language model here is any callable mapping token ids (B, T) to logits
(B, T, V), and it must be causal (the logits at position t depend on tokens
0..t only), as every language model of the course is. The tensor functions
keep the device and dtype of their inputs. ``sequence_logprob`` and
``induction_scores`` read shapes only and run on ``meta`` tensors;
``classify_by_likelihood`` and ``constrained_decode`` return a Python int and
``self_consistency`` draws tokens and decodes them, so they need real tensors;
``bm25_scores`` and ``retrieval_prompt`` work on Python strings (counting words
is not a tensor operation), and ``bm25_scores`` returns a CPU tensor. Randomness only comes from
the ``generator`` argument. Bad arguments raise ``ValueError`` naming the
argument. Each public function only uses ``re``, ``Counter``, ``torch``
and ``F`` and calls no other function of this module, so it can be
copied on its own into a notebook.
"""

import re
from collections import Counter

import torch
import torch.nn.functional as F


def few_shot_prompt(
    examples: list[tuple[str, str]],
    query: str,
    template: str = "in: {input} -> out: {output}\n",
) -> str:
    """A few-shot prompt: the worked examples, then the query, ending where its answer starts.

    The template must contain the placeholder ``{input}`` exactly once and, after
    it, the placeholder ``{output}`` exactly once. An example (x, y) is rendered by
    putting x in place of ``{input}`` and y in place of ``{output}``, literally:
    not with ``str.format`` and without scanning the inserted text again, so
    braces (even the placeholder strings themselves) inside x or y are copied as
    they are. The prompt is the rendered examples concatenated in their order,
    followed by the query rendered with the template cut just before
    ``{output}`` (nothing of the template after that point is added). With no
    examples the prompt is the query alone (zero-shot).

    Example: ``few_shot_prompt([("2+2", "4")], "3+3")`` is
    ``"in: 2+2 -> out: 4\\nin: 3+3 -> out: "``.

    Args:
        examples: the (input, output) pairs of strings, in order; may be empty.
        query: the input whose output the model should write.
        template: the text of one example, with ``{input}`` before ``{output}``.

    Returns:
        The prompt, a string.
    """
    if not isinstance(template, str):
        raise ValueError(f"template must be a string, got {type(template).__name__}")
    for name in ("{input}", "{output}"):
        if template.count(name) != 1:
            raise ValueError(
                f"template must contain {name} exactly once, got it {template.count(name)} "
                f"times in {template!r}"
            )
    i, o = template.index("{input}"), template.index("{output}")
    if o < i:
        raise ValueError(f"template must have {{input}} before {{output}}, got {template!r}")
    before, middle, after = template[:i], template[i + 7 : o], template[o + 8 :]
    parts = []
    for n, example in enumerate(examples):
        if not isinstance(example, (tuple, list)) or len(example) != 2:
            raise ValueError(f"examples[{n}] must be an (input, output) pair, got {example!r}")
        x, y = example
        parts.append(before + str(x) + middle + str(y) + after)
    parts.append(before + str(query) + middle)
    return "".join(parts)


def sequence_logprob(
    model, prompt_ids: torch.Tensor, continuation_ids: torch.Tensor
) -> torch.Tensor:
    """log p(continuation | prompt): the sum of the log-probabilities of the continuation's tokens.

    Σ_{c=0}^{C-1} log softmax(logits at the position before token c)[token c], each
    continuation token conditioned on the whole prompt and the continuation
    tokens before it. One forward pass, ``model(ids[None])`` with
    ``ids = cat(prompt_ids, continuation_ids[:-1])`` of length P + C - 1 (the last
    continuation token is predicted, never read). The log-softmax is computed in
    float32 when the logits are float16 or bfloat16 (otherwise in their dtype)
    and the sum is returned in the dtype of the logits, on their device. No
    ``torch.no_grad`` inside: the result is differentiable with respect to the
    model's parameters.

    Args:
        model: a causal language model, ids (B, T) -> logits (B, T, V).
        prompt_ids: shape (P,), integer token ids, P >= 1.
        continuation_ids: shape (C,), integer token ids, C >= 1.

    Returns:
        shape (), the log-probability (<= 0).
    """
    for name, ids in (("prompt_ids", prompt_ids), ("continuation_ids", continuation_ids)):
        if ids.dim() != 1 or ids.shape[0] < 1:
            raise ValueError(f"{name} must have shape (n,) with n >= 1, got {tuple(ids.shape)}")
        if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise ValueError(f"{name} must hold integer token ids, got dtype {ids.dtype}")
    P, C = prompt_ids.shape[0], continuation_ids.shape[0]
    rest = continuation_ids[:-1].to(device=prompt_ids.device, dtype=prompt_ids.dtype)
    ids = torch.cat([prompt_ids, rest])  # (P + C - 1,)
    logits = model(ids[None])  # (1, P + C - 1, V)
    if logits.dim() != 3 or tuple(logits.shape[:2]) != (1, P + C - 1):
        raise ValueError(
            f"model must map ids (1, {P + C - 1}) to logits (1, {P + C - 1}, V), "
            f"got {tuple(logits.shape)}"
        )
    pred = logits[0, P - 1 :]  # (C,  V): position P - 1 + c predicts continuation token c
    logp = F.log_softmax(pred.to(torch.promote_types(pred.dtype, torch.float32)), dim=-1)
    target = continuation_ids.to(device=logits.device, dtype=torch.long)  # (C,)
    token_logp = logp.gather(-1, target[:, None]).squeeze(-1)  # (C,)
    return token_logp.sum().to(logits.dtype)  # ()


def classify_by_likelihood(
    model,
    prompt_ids: torch.Tensor,
    label_ids: list[torch.Tensor],
    normalize: bool = False,
) -> tuple[torch.Tensor, int]:
    """Zero-shot classification: score each label by its log-likelihood after the prompt.

    The score of label i is log p(label_ids[i] | prompt), the sum over its tokens
    of log softmax(logits at the position before the token)[token] (the value of
    ``sequence_logprob(model, prompt_ids, label_ids[i])``); with
    ``normalize=True`` it is divided by the label's number of tokens (the mean
    log-probability per token, which does not favour short labels). The labels
    may have different lengths: they are scored in ONE forward pass over a batch
    of n_labels rows, row i being ``cat(prompt_ids, label_ids[i][:-1])`` padded
    on the right with token 0 to the longest row (the model is causal, so the
    padding never changes a scored position). The log-softmax is computed in
    float32 when the logits are float16 or bfloat16 (otherwise in their dtype);
    the scores are returned in the dtype of the logits, on their device. The
    function is self-contained: it does not call ``sequence_logprob``.

    Args:
        model: a causal language model, ids (B, T) -> logits (B, T, V).
        prompt_ids: shape (P,), integer token ids, P >= 1.
        label_ids: a non-empty list of n_labels tensors of shape (L_i,), L_i >= 1,
            integer token ids: the tokens of each label's verbalisation (e.g.
            " positive", " negative").
        normalize: divide each score by its label's number of tokens L_i.

    Returns:
        (scores, best): scores of shape (n_labels,); best, a Python int, the index of
        the largest score (the lowest such index on ties).
    """
    if prompt_ids.dim() != 1 or prompt_ids.shape[0] < 1:
        raise ValueError(
            f"prompt_ids must have shape (P,) with P >= 1, got {tuple(prompt_ids.shape)}"
        )
    if prompt_ids.is_floating_point() or prompt_ids.is_complex() or prompt_ids.dtype == torch.bool:
        raise ValueError(f"prompt_ids must hold integer token ids, got dtype {prompt_ids.dtype}")
    if len(label_ids) == 0:
        raise ValueError("label_ids must hold at least one label")
    for i, label in enumerate(label_ids):
        if not isinstance(label, torch.Tensor) or label.dim() != 1 or label.shape[0] < 1:
            shape = tuple(label.shape) if isinstance(label, torch.Tensor) else type(label).__name__
            raise ValueError(f"label_ids[{i}] must have shape (L,) with L >= 1, got {shape}")
        if label.is_floating_point() or label.is_complex() or label.dtype == torch.bool:
            raise ValueError(f"label_ids[{i}] must hold integer token ids, got dtype {label.dtype}")
    device = prompt_ids.device
    P, n = prompt_ids.shape[0], len(label_ids)
    lengths = torch.tensor([label.shape[0] for label in label_ids], device=device)  # (n,)
    L = max(label.shape[0] for label in label_ids)
    ids = torch.zeros(n, P + L - 1, dtype=torch.long, device=device)  # (n, P + L - 1), pad 0
    ids[:, :P] = prompt_ids
    targets = torch.zeros(n, L, dtype=torch.long, device=device)  # (n, L), pad 0
    for i, label in enumerate(label_ids):  # a loop over labels, not over tokens
        ids[i, P : P + label.shape[0] - 1] = label[:-1]
        targets[i, : label.shape[0]] = label
    logits = model(ids)  # (n, P + L - 1, V)
    if logits.dim() != 3 or tuple(logits.shape[:2]) != (n, P + L - 1):
        raise ValueError(
            f"model must map ids ({n}, {P + L - 1}) to logits ({n}, {P + L - 1}, V), "
            f"got {tuple(logits.shape)}"
        )
    pred = logits[:, P - 1 :]  # (n, L, V): position P - 1 + j predicts label token j
    logp = F.log_softmax(pred.to(torch.promote_types(pred.dtype, torch.float32)), dim=-1)
    targets = targets.to(logits.device)
    token_logp = logp.gather(-1, targets[..., None]).squeeze(-1)  # (n, L)
    valid = torch.arange(L, device=logits.device)[None, :] < lengths.to(logits.device)[:, None]
    scores = token_logp.masked_fill(~valid, 0.0).sum(dim=-1)  # (n,)
    if normalize:
        scores = scores / lengths.to(device=logits.device, dtype=scores.dtype)
    scores = scores.to(logits.dtype)  # (n,)
    return scores, int(scores.argmax())  # argmax: the first of the maxima


def majority_vote(answers: list[str | None]) -> str | None:
    """The most common answer, None entries ignored.

    Answers are compared as exact strings (normalise them when parsing, e.g.
    strip spaces). None entries stand for chains whose answer could not be
    parsed and do not vote. Among the answers with the largest count, the one
    whose first occurrence comes earliest in the list wins.

    Args:
        answers: a list of strings or None.

    Returns:
        The winning answer, or None when the list is empty or holds only None.
    """
    for i, a in enumerate(answers):
        if a is not None and not isinstance(a, str):
            raise ValueError(f"answers[{i}] must be a string or None, got {type(a).__name__}")
    counts = Counter(a for a in answers if a is not None)  # keys in order of first occurrence
    if not counts:
        return None
    best = max(counts.values())
    return next(a for a, c in counts.items() if c == best)  # the earliest of the tied


def self_consistency(
    model,
    prompt_ids: torch.Tensor,
    n_samples: int,
    max_new_tokens: int,
    decode,
    parse,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[str | None, list[str | None]]:
    """Self-consistency (Wang et al., 2023): sample several chains, majority-vote their answers.

    The n_samples chains are sampled as ONE batch: ids start as the prompt
    repeated n_samples times, shape (n_samples, P). Each of the max_new_tokens
    steps (no early stop: an end token is just another token, which ``decode``
    or ``parse`` may cut at) runs the model on the whole batch so far, takes
    the logits of the last position, ``logits = model(ids)[:, -1, :]`` of
    shape (n_samples, V), and draws exactly once
    ``torch.multinomial(F.softmax(logits / temperature, dim=-1), 1,
    generator=generator)`` (in the dtype of the logits), then appends the drawn
    column to ids. This is the draw order of chapter 07's ``generate`` without
    filters, so both give the same tokens from the same generator state. The
    model runs under ``torch.no_grad``. Row r's new token ids, as a list of
    Python ints, give ``parse(decode(new_ids))``, a string or None (no answer
    found). The answer is the majority vote of these: the most common non-None
    string (exact equality), ties going to the one whose first occurrence comes
    earliest in row order, None when every chain gives None.

    Args:
        model: a causal language model, ids (B, T) -> logits (B, T, V).
        prompt_ids: shape (P,), integer token ids, P >= 1.
        n_samples: the number of chains, >= 1.
        max_new_tokens: the tokens sampled per chain, >= 1.
        decode: maps a list of token ids to text.
        parse: maps a chain's text to its final answer, or None.
        temperature: T > 0 (self-consistency needs diverse samples; there is no
            greedy mode).
        generator: the source of randomness.

    Returns:
        (answer, answers): the majority answer (a string or None) and the list of the
        n_samples parsed answers in row order.
    """
    if prompt_ids.dim() != 1 or prompt_ids.shape[0] < 1:
        raise ValueError(
            f"prompt_ids must have shape (P,) with P >= 1, got {tuple(prompt_ids.shape)}"
        )
    if prompt_ids.is_floating_point() or prompt_ids.is_complex() or prompt_ids.dtype == torch.bool:
        raise ValueError(f"prompt_ids must hold integer token ids, got dtype {prompt_ids.dtype}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    P = prompt_ids.shape[0]
    ids = prompt_ids[None, :].expand(n_samples, P)  # (n, P)
    with torch.no_grad():
        for _ in range(max_new_tokens):  # a loop over decoding steps
            logits = model(ids)[:, -1, :]  # (n, V)
            probs = F.softmax(logits / temperature, dim=-1)  # (n, V)
            nxt = torch.multinomial(probs, 1, generator=generator)  # (n, 1)
            ids = torch.cat([ids, nxt.to(device=ids.device, dtype=ids.dtype)], dim=1)
    answers = [parse(decode(row)) for row in ids[:, P:].tolist()]  # row order
    counts = Counter(a for a in answers if a is not None)  # keys in order of first occurrence
    if not counts:
        return None, answers
    best = max(counts.values())
    return next(a for a, c in counts.items() if c == best), answers


def constrained_decode(model, prompt_ids: torch.Tensor, options: list[torch.Tensor]) -> int:
    """Greedy decoding restricted to a fixed set of answers (a trie of token sequences).

    The chosen tokens start empty. At each step the model runs on
    ``cat(prompt_ids, chosen)[None]`` and reads the logits of the last position;
    the allowed tokens are the next tokens of the options that begin with the
    tokens chosen so far, and the allowed token with the largest logit is
    appended (ties: the lowest token id). Decoding stops as soon as the chosen
    tokens equal a whole option, and that option's index is returned. Because
    the options are prefix-free, this happens exactly once, after at most the
    longest option's length steps. The model runs under ``torch.no_grad``.

    Unlike ``classify_by_likelihood``, which scores every option in full, this
    commits greedily to one token at a time, starting with the first: an option
    whose first token has a lower logit is never considered, even if its whole
    sequence is more probable.

    Args:
        model: a causal language model, ids (B, T) -> logits (B, T, V).
        prompt_ids: shape (P,), integer token ids, P >= 1.
        options: a non-empty list of tensors of shape (L_i,), L_i >= 1, integer token
            ids in [0, V) (V is checked after the first forward pass); prefix-free: no
            option equals another or is a prefix of another.

    Returns:
        The index in ``options`` of the decoded option, a Python int.
    """
    if prompt_ids.dim() != 1 or prompt_ids.shape[0] < 1:
        raise ValueError(
            f"prompt_ids must have shape (P,) with P >= 1, got {tuple(prompt_ids.shape)}"
        )
    if prompt_ids.is_floating_point() or prompt_ids.is_complex() or prompt_ids.dtype == torch.bool:
        raise ValueError(f"prompt_ids must hold integer token ids, got dtype {prompt_ids.dtype}")
    if len(options) == 0:
        raise ValueError("options must hold at least one option")
    for i, opt in enumerate(options):
        if not isinstance(opt, torch.Tensor) or opt.dim() != 1 or opt.shape[0] < 1:
            shape = tuple(opt.shape) if isinstance(opt, torch.Tensor) else type(opt).__name__
            raise ValueError(f"options[{i}] must have shape (L,) with L >= 1, got {shape}")
        if opt.is_floating_point() or opt.is_complex() or opt.dtype == torch.bool:
            raise ValueError(f"options[{i}] must hold integer token ids, got dtype {opt.dtype}")
    device = prompt_ids.device
    n = len(options)
    lengths = torch.tensor([opt.shape[0] for opt in options], device=device)  # (n,)
    L = max(opt.shape[0] for opt in options)
    table = torch.full((n, L), -1, dtype=torch.long, device=device)  # (n, L), -1 past the end
    for i, opt in enumerate(options):  # a loop over options, not over tokens
        table[i, : opt.shape[0]] = opt
    inside = torch.arange(L, device=device)[None, :] < lengths[:, None]  # (n, L)
    if bool((table[inside] < 0).any()):
        raise ValueError("options must hold token ids >= 0")
    for i, opt in enumerate(options):  # prefix-freeness, one option against all at once
        starts = (table[:, : opt.shape[0]] == table[i, : opt.shape[0]]).all(dim=1)  # (n,)
        starts[i] = False
        if bool(starts.any()):
            j = int(starts.nonzero()[0])
            raise ValueError(
                f"options must be prefix-free: options[{i}] equals or is a prefix of options[{j}]"
            )
    alive = torch.ones(n, dtype=torch.bool, device=device)  # (n,) options consistent so far
    ids = prompt_ids.long()  # (P + step,)
    with torch.no_grad():
        for step in range(L):  # a loop over decoding steps
            logits = model(ids[None])[0, -1]  # (V,)
            if step == 0 and int(table.max()) >= logits.shape[-1]:  # V is known now
                raise ValueError(
                    f"options must hold token ids < V = {logits.shape[-1]}, got {int(table.max())}"
                )
            allowed = torch.unique(table[alive, step])  # sorted ascending; none is -1 here
            values = logits[allowed.to(logits.device)]  # (n_allowed,)
            token = allowed[values.argmax().to(device)]  # (): the first maximum = lowest id
            alive = alive & (table[:, step] == token)
            ids = torch.cat([ids, token[None].to(ids.device)])
            done = alive & (lengths == step + 1)  # (n,)
            if bool(done.any()):
                return int(done.nonzero()[0])
    raise AssertionError("unreachable: prefix-free options always end the decoding")


def bm25_scores(
    query: list[str],
    documents: list[list[str]],
    k1: float = 1.5,
    b: float = 0.75,
) -> torch.Tensor:
    """Okapi BM25 relevance of each document to a query (Robertson et al.).

    With N documents, n(q) the number of documents containing the term q, f(q, D)
    the number of times q occurs in D, |D| the number of tokens of D and avgdl the
    mean of |D| over the documents:

        idf(q) = ln(1 + (N - n(q) + 0.5) / (n(q) + 0.5))
        score(D) = Σ_{q in query} idf(q) · f(q, D) · (k1 + 1)
                                  / (f(q, D) + k1 · (1 - b + b · |D| / avgdl))

    The sum runs over the query's tokens, so a term repeated in the query counts
    once per occurrence. A term absent from D contributes 0 (also when k1 = 0).
    When avgdl is 0 (every document empty) |D| / avgdl is taken as 0, so every
    score is 0, never nan. An empty query gives zeros. Terms are compared as
    exact strings (tokenise and lowercase before calling). Computed in float64
    and returned as float32 on the CPU: counting words is done on Python strings,
    so there is no device to follow.

    Args:
        query: the query's tokens, a list of strings (not a string).
        documents: a non-empty list of N documents, each a list of token strings.
        k1: term-frequency saturation, >= 0 (0: only presence counts).
        b: length normalisation, in [0, 1] (0: none, 1: full).

    Returns:
        scores: shape (N,), float32, CPU; score(D) for each document in order.
    """
    if isinstance(query, str) or not all(isinstance(q, str) for q in query):
        raise ValueError("query must be a list of token strings (split the text first)")
    if isinstance(documents, str) or len(documents) == 0:
        raise ValueError("documents must be a non-empty list of token lists")
    for i, doc in enumerate(documents):
        if isinstance(doc, str) or not all(isinstance(w, str) for w in doc):
            raise ValueError(f"documents[{i}] must be a list of token strings, got {doc!r:.60}")
    if not k1 >= 0:
        raise ValueError(f"k1 must be >= 0, got {k1}")
    if not 0 <= b <= 1:
        raise ValueError(f"b must be in [0, 1], got {b}")
    cpu, f64 = torch.device("cpu"), torch.float64
    counts = [Counter(doc) for doc in documents]
    tf = torch.tensor([[c[q] for q in query] for c in counts], dtype=f64, device=cpu).reshape(
        len(documents), len(query)
    )  # (N, Q)
    N = tf.shape[0]
    df = (tf > 0).sum(dim=0).to(f64)  # (Q,) documents containing each query term
    idf = torch.log1p((N - df + 0.5) / (df + 0.5))  # (Q,)
    dl = torch.tensor([len(doc) for doc in documents], dtype=f64, device=cpu)  # (N,)
    avgdl = dl.mean()
    rel = dl / avgdl if bool(avgdl > 0) else torch.zeros_like(dl)  # (N,) |D| / avgdl
    denom = tf + k1 * (1 - b + b * rel[:, None])  # (N, Q)
    term = torch.where(tf > 0, tf * (k1 + 1) / denom.clamp_min(1e-300), 0.0)  # (N, Q)
    return (idf[None, :] * term).sum(dim=1).to(torch.float32)  # (N,)


def retrieval_prompt(
    question: str,
    documents: list[str],
    k: int = 2,
    k1: float = 1.5,
    b: float = 0.75,
) -> tuple[str, list[int]]:
    """Retrieval-augmented prompt: the k passages BM25 ranks best, then the question.

    The question and each document are tokenised as lowercase words,
    ``re.findall(r"\\w+", text.lower())``, and each document is scored by Okapi
    BM25 against the question's words (the formula of ``bm25_scores``, computed
    here again so that the function stands alone: idf(q) = ln(1 + (N - n(q) +
    0.5) / (n(q) + 0.5)), score(D) = Σ_q idf(q) · f(q, D) · (k1 + 1) / (f(q, D)
    + k1 · (1 - b + b · |D| / avgdl)), a repeated question word counting once
    per occurrence, |D| / avgdl taken as 0 when every document is empty). The
    documents are ranked by decreasing score, equal scores in increasing index
    order, and the first min(k, N) are retrieved. The prompt has one line per
    retrieved passage, in rank order, numbered from 1: ``"[1] " + text + "\\n"``
    with the document's original text, then ``"Question: " + question +
    "\\nAnswer (cite the passages by number):"``.

    Example: ``retrieval_prompt("Who wrote it?", ["a b", "who wrote"], k=1)`` is
    ``("[1] who wrote\\nQuestion: Who wrote it?\\nAnswer (cite the passages by
    number):", [1])``.

    Args:
        question: the question, a string.
        documents: a non-empty list of N passages (strings).
        k: the number of passages to retrieve, >= 1 (k > N retrieves all).
        k1, b: the BM25 parameters, k1 >= 0 and b in [0, 1].

    Returns:
        (prompt, indices): the prompt string and the list of the retrieved documents'
        indices in rank order (Python ints).
    """
    if not isinstance(question, str):
        raise ValueError(f"question must be a string, got {type(question).__name__}")
    if isinstance(documents, str) or len(documents) == 0:
        raise ValueError("documents must be a non-empty list of strings")
    for i, doc in enumerate(documents):
        if not isinstance(doc, str):
            raise ValueError(f"documents[{i}] must be a string, got {type(doc).__name__}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not k1 >= 0:
        raise ValueError(f"k1 must be >= 0, got {k1}")
    if not 0 <= b <= 1:
        raise ValueError(f"b must be in [0, 1], got {b}")
    cpu, f64 = torch.device("cpu"), torch.float64
    query = re.findall(r"\w+", question.lower())
    counts = [Counter(re.findall(r"\w+", doc.lower())) for doc in documents]
    N = len(documents)
    tf = torch.tensor([[c[q] for q in query] for c in counts], dtype=f64, device=cpu).reshape(
        N, len(query)
    )  # (N, Q)
    df = (tf > 0).sum(dim=0).to(f64)  # (Q,)
    idf = torch.log1p((N - df + 0.5) / (df + 0.5))  # (Q,)
    dl = torch.tensor([sum(c.values()) for c in counts], dtype=f64, device=cpu)  # (N,)
    avgdl = dl.mean()
    rel = dl / avgdl if bool(avgdl > 0) else torch.zeros_like(dl)  # (N,)
    denom = tf + k1 * (1 - b + b * rel[:, None])  # (N, Q)
    term = torch.where(tf > 0, tf * (k1 + 1) / denom.clamp_min(1e-300), 0.0)  # (N, Q)
    scores = (idf[None, :] * term).sum(dim=1)  # (N,)
    order = torch.sort(scores, descending=True, stable=True).indices  # ties: lower index first
    indices = order[: min(k, N)].tolist()
    passages = "".join(f"[{r + 1}] {documents[i]}\n" for r, i in enumerate(indices))
    return passages + f"Question: {question}\nAnswer (cite the passages by number):", indices


def induction_scores(attention: torch.Tensor, period: int) -> torch.Tensor:
    """How strongly attention behaves like an induction head on a repeated sequence.

    The sequence repeats with the given period: token t equals token t - period for
    t >= period. At such a position an induction head attends to the token right
    after the earlier copy of the current token, position t - period + 1. The
    score is the mean over the T - period query positions t in [period, T) of
    ``attention[..., t, t - period + 1]``: 1 for a perfect induction head, 0 for
    a head that never looks there. Only shapes are read, so it runs on ``meta``
    tensors; the dtype and device are those of ``attention``.

    Args:
        attention: shape (..., T, T), attention weights, row t (the query) over the
            keys, e.g. (n_layers, n_heads, T, T) or (n_heads, T, T).
        period: the length of the repeated block, 1 <= period < T.

    Returns:
        shape (...), one score per leading index (e.g. per layer and head).
    """
    if attention.dim() < 2 or attention.shape[-1] != attention.shape[-2]:
        raise ValueError(f"attention must have shape (..., T, T), got {tuple(attention.shape)}")
    T = attention.shape[-1]
    if isinstance(period, bool) or not isinstance(period, int) or not 1 <= period < T:
        raise ValueError(f"period must be an int with 1 <= period < T = {T}, got {period!r}")
    # offset -(period - 1): the entries (period - 1 + j, j), j = 0..T - period; dropping the
    # first leaves the rows t = period..T - 1 at column t - period + 1
    diag = torch.diagonal(attention, offset=-(period - 1), dim1=-2, dim2=-1)  # (..., T-period+1)
    return diag[..., 1:].mean(dim=-1)  # (...)
