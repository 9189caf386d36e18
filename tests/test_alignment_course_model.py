"""Chapter 06's experiment, smaller: DPO on the course model teaches a checkable preference.

The theory page (book/06_alignment.md) trains the cached "main" course model with the
reference ``dpo_loss`` to avoid the word "the", and a linear reward model on the same
pairs. This test runs a smaller version (fewer prompts, shorter continuations, fewer
steps) so that a change to the reference or the course model that breaks the page's
claims shows up in the suite: the rate of the preferred behaviour on held-out prompts
rises, the policy ranks held-out pairs by their implicit reward better than chance, the
KL to the reference stays small, and the reward model ranks held-out pairs above chance.
"""

from __future__ import annotations

import copy
import re

import pytest
import torch

from course.model import EOS_ID
from solutions.alignment import dpo_loss, kl_penalty, reward_model_loss, sequence_logprobs
from solutions.course_model import load_course_model, prepare_data
from solutions.sampling import generate

PROMPT_LEN, NEW_TOKENS, SAMPLES = 8, 12, 4


def _setup():
    try:
        model, tokenizer = load_course_model("main", train_if_missing=False)
    except FileNotFoundError as err:
        pytest.skip(str(err))
    _, _, val_ids, _ = prepare_data(progress=False)
    ends = (val_ids == EOS_ID).nonzero()[:, 0].tolist()
    starts = [0] + [e + 1 for e in ends[:-1]]
    prompts = [
        val_ids[s : s + PROMPT_LEN]
        for s, e in zip(starts, ends, strict=True)
        if e - s >= PROMPT_LEN + 4
    ]
    return model.eval(), tokenizer, prompts


def _is_good(tokenizer, ids):
    good = []
    for row in ids[:, PROMPT_LEN:].tolist():
        text = tokenizer.decode(row[: row.index(EOS_ID)] if EOS_ID in row else row)
        good.append(re.search(r"\bthe\b", text, re.IGNORECASE) is None)
    return torch.tensor(good)


@torch.no_grad()
def _sample(model, prompts, seed):
    ids = torch.stack(prompts).repeat_interleave(SAMPLES, dim=0)
    g = torch.Generator().manual_seed(seed)
    return generate(model, ids, NEW_TOKENS, eos_token_id=EOS_ID, generator=g)


def _mask(ids):
    new = ids[:, PROMPT_LEN:]
    ended_before = (new == EOS_ID).long().cumsum(dim=1) - (new == EOS_ID).long() > 0
    mask = torch.zeros(ids.shape[0], ids.shape[1] - 1, dtype=torch.bool)
    mask[:, PROMPT_LEN - 1 :] = ~ended_before
    return mask


def _logps(model, ids):
    return sequence_logprobs(model(ids[:, :-1]), ids[:, 1:], _mask(ids))


def _pairs(ids, good):
    chosen, rejected = [], []
    for i in range(0, len(ids), SAMPLES):
        g = good[i : i + SAMPLES]
        if g.any() and not g.all():
            chosen.append(ids[i + int(g.int().argmax())])
            rejected.append(ids[i + int((~g).int().argmax())])
    return torch.stack(chosen), torch.stack(rejected)


@torch.no_grad()
def _features(model, ids):
    x = ids[:, :-1]
    h = model.tok_emb(x) + model.pos_emb(torch.arange(x.shape[1]))
    for block in model.blocks:
        h = block(h)
    h = model.ln_f(h)
    m = _mask(ids).float()[..., None]
    return (h * m).sum(dim=1) / m.sum(dim=1)


@pytest.mark.slow
def test_dpo_raises_the_preferred_behaviour_and_a_reward_model_learns_it() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(min(2, threads))  # not more than the worker's share (conftest)
    try:
        reference, tokenizer, prompts = _setup()
        train_prompts, test_prompts = prompts[:64], prompts[-40:]
        train = _sample(reference, train_prompts, seed=0)
        chosen, rejected = _pairs(train, _is_good(tokenizer, train))
        before = _sample(reference, test_prompts, seed=1)
        test_chosen, test_rejected = _pairs(before, _is_good(tokenizer, before))
        with torch.no_grad():
            ref_c, ref_r = _logps(reference, chosen), _logps(reference, rejected)
            ref_tc, ref_tr = _logps(reference, test_chosen), _logps(reference, test_rejected)

        policy = copy.deepcopy(reference).train()
        opt = torch.optim.Adam(policy.parameters(), lr=1e-4)
        order = torch.Generator().manual_seed(2)
        for _ in range(25):
            idx = torch.randperm(len(chosen), generator=order)[:16]
            both = _logps(policy, torch.cat([chosen[idx], rejected[idx]]))
            n = len(idx)
            losses, _, _ = dpo_loss(both[:n], both[n:], ref_c[idx], ref_r[idx], beta=0.1)
            opt.zero_grad()
            losses.mean().backward()
            opt.step()
        policy.eval()

        with torch.no_grad():  # held-out pairs: the implicit rewards rank them
            _, cr, rr = dpo_loss(
                _logps(policy, test_chosen), _logps(policy, test_rejected), ref_tc, ref_tr
            )
        assert (cr > rr).float().mean() > 0.6

        after = _sample(policy, test_prompts, seed=1)
        rate_before = _is_good(tokenizer, before).float().mean()
        rate_after = _is_good(tokenizer, after).float().mean()
        assert rate_after > rate_before + 0.05, (rate_before, rate_after)
        with torch.no_grad():
            lp = policy(after[:, :-1]).log_softmax(-1).gather(-1, after[:, 1:, None])[..., 0]
            lr = reference(after[:, :-1]).log_softmax(-1).gather(-1, after[:, 1:, None])[..., 0]
        kl = kl_penalty(lp, lr, "k3")[_mask(after)].mean()
        assert 0 < kl < 0.5, kl

        torch.manual_seed(0)
        fc, fr = _features(reference, chosen), _features(reference, rejected)
        head = torch.nn.Linear(fc.shape[1], 1)
        opt = torch.optim.AdamW(head.parameters(), lr=1e-2, weight_decay=0.1)
        for _ in range(200):
            loss = reward_model_loss(head(fc)[:, 0], head(fr)[:, 0])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            tc, tr = _features(reference, test_chosen), _features(reference, test_rejected)
            accuracy = (head(tc) > head(tr)).float().mean()
        assert accuracy > 0.6, accuracy
    finally:
        torch.set_num_threads(threads)
