"""The text domain's data layer: the story grammar's exact tables, the tokenizer, the
ROCStories loader and the padded story tensors."""

from __future__ import annotations

import collections
import csv
import math
import re

import pytest
import torch

from rtb_lab.domains.text.data import (
    EncodedStories,
    encode_stories,
    generated_corpus,
    load_rocstories_csv,
    words_of,
)
from rtb_lab.domains.text.grammar import (
    MAX_BEGINNING_TOKENS,
    MAX_ENDING_TOKENS,
    MAX_MIDDLE_TOKENS,
    Story,
    StoryGrammar,
)
from rtb_lab.domains.text.tokenizer import SPECIAL_TOKENS, StoryTokenizer, normalise

CAKE = ("anna wanted to bake a cake .", "she bought flour and eggs .",
        "but the oven was broken .")


@pytest.fixture(scope="module")
def small() -> StoryGrammar:
    return StoryGrammar.small()


@pytest.fixture(scope="module")
def default() -> StoryGrammar:
    return StoryGrammar.default()


@pytest.fixture(scope="module")
def tok(default) -> StoryTokenizer:
    return StoryTokenizer.from_words(default.vocabulary())


# ---------------------------------------------------------------------- grammar


def test_small_grammar_is_enumerable(small):
    beginnings = small.beginnings()
    assert len(beginnings) == 8 and CAKE in beginnings
    for b in beginnings:
        middles = small.middles(b)
        assert 0 < len(middles) <= 10
        assert math.isclose(sum(middles.values()), 1.0, abs_tol=1e-12)
        for m in middles:
            assert math.isclose(sum(small.endings(b, m).values()), 1.0, abs_tol=1e-12)


def test_prior_table_by_hand(small):
    # fix 0.3 over 2 fixes, generic 0.25 over 2, irrelevant 0.3 over 3, give up 0.15 over 1
    middles = small.middles(CAKE)
    assert middles["she fixed the oven ."] == pytest.approx(0.15)
    assert middles["she asked a friend for help ."] == pytest.approx(0.125)
    assert middles["she fed the cat ."] == pytest.approx(0.1)
    assert middles["she gave up ."] == pytest.approx(0.15)
    assert small.middle_log_prob(CAKE, "she gave up .") == pytest.approx(math.log(0.15))
    assert small.middle_log_prob(CAKE, "she flew the kite .") == -math.inf
    # p(success | fix) = 0.9 split over 2 phrasings
    endings = small.endings(CAKE, "she fixed the oven .")
    assert endings["she baked a tasty cake ."] == pytest.approx(0.45)
    assert endings["there was no cake that day ."] == pytest.approx(0.05)


def test_exact_posterior_by_hand(small):
    failure = "there was no cake that day ."
    # p(failure phrasing | m) = (1 - p_success) / 2: fix 0.05, generic 0.25, irrelevant
    # 0.45, give up 0.49. Unnormalised p(m) p(e|m): fix 0.15*0.05 (x2), generic
    # 0.125*0.25 (x2), irrelevant 0.1*0.45 (x3), give up 0.15*0.49.
    z = 2 * 0.15 * 0.05 + 2 * 0.125 * 0.25 + 3 * 0.1 * 0.45 + 0.15 * 0.49
    assert z == pytest.approx(0.286)
    post = small.exact_posterior(CAKE, failure, beta=1.0)
    assert set(post) == set(small.middles(CAKE))
    assert post["she gave up ."] == pytest.approx(0.0735 / 0.286)
    assert post["she fixed the oven ."] == pytest.approx(0.0075 / 0.286)
    assert sum(post.values()) == pytest.approx(1.0)
    # beta = 2 squares the likelihood: give up 0.15 * 0.49^2 over the same sum
    z2 = 2 * 0.15 * 0.05**2 + 2 * 0.125 * 0.25**2 + 3 * 0.1 * 0.45**2 + 0.15 * 0.49**2
    post2 = small.exact_posterior(CAKE, failure, beta=2.0)
    assert post2["she gave up ."] == pytest.approx(0.15 * 0.49**2 / z2)
    # a fix-success ending is only reachable from the two fixes, equally
    fixed = small.exact_posterior(CAKE, "she baked a tasty cake .", beta=1.0)
    assert fixed["she fixed the oven ."] == pytest.approx(0.5)
    assert fixed["she borrowed an oven ."] == pytest.approx(0.5)
    assert fixed["she gave up ."] == 0.0


def test_bad_inputs_are_clear(small):
    with pytest.raises(ValueError, match="not a beginning of this grammar"):
        small.middles(("bob wanted to swim .", "he swam .", "but it rained ."))
    with pytest.raises(ValueError, match="beta must be"):
        small.exact_posterior(CAKE, "she baked a tasty cake .", beta=0.0)
    with pytest.raises(ValueError, match="cannot follow"):
        small.exact_posterior(CAKE, "he flew the kite high .", beta=1.0)
    with pytest.raises(ValueError, match="not a middle"):
        small.endings(CAKE, "she flew a plane .")


def test_oracle_reward_floor(small):
    floor = math.log(1e-4)
    assert small.ending_log_prob(CAKE, "she fixed the oven .", "she baked a tasty cake .") \
        == pytest.approx(math.log(0.45))
    assert small.ending_log_prob(CAKE, "she oven the fixed .", "she baked a tasty cake .") \
        == floor
    assert small.ending_log_prob(CAKE, "she fixed the oven .", "the kite soared .") == floor
    assert small.ending_log_prob(CAKE, "", "she baked a tasty cake .", floor=-7.0) == -7.0


def test_ending_depends_on_middle(small, default):
    for grammar in (small, default):
        b = grammar.beginnings()[0]
        success = grammar.success_endings(b)
        groups = {grammar.middle_group(b, m): m for m in grammar.middles(b)}
        p_success = {g: sum(p for e, p in grammar.endings(b, m).items() if e in success)
                     for g, m in groups.items()}
        assert p_success["fix"] - p_success["give_up"] >= 0.8
        assert p_success["fix"] > p_success["generic"] > p_success["irrelevant"]


def test_sample_is_deterministic_and_grammatical(small):
    a, b = small.sample(200, seed=3), small.sample(200, seed=3)
    assert a == b and a != small.sample(200, seed=4)
    for story in a:
        assert small.middle_log_prob(story.beginning, story.middle) > -math.inf
        assert story.ending in small.endings(story.beginning, story.middle)
        assert len(story.sentences) == 5 and story.text.startswith(story.beginning[0])


def test_empirical_middle_frequencies(small):
    stories = small.sample(20000, seed=0, beginning=CAKE)
    counts = collections.Counter(s.middle for s in stories)
    for m, p in small.middles(CAKE).items():
        assert abs(counts[m] / 20000 - p) < 0.02, m


def test_held_out_split(default):
    train, test = default.split(3000, 200, seed=1)
    assert len(train) == 3000 and len(test) == 200
    assert not {s.beginning for s in train} & {s.beginning for s in test}
    assert (train, test) == default.split(3000, 200, seed=1)
    train2, test2 = generated_corpus(StoryGrammar.small(), n_train=50, n_test=10, seed=0)
    assert len(train2) == 50 and len(test2) == 10
    assert not {s.beginning for s in train2} & {s.beginning for s in test2}


def test_default_size_and_length_limits(default):
    beginnings = default.beginnings()
    assert 2000 <= len(beginnings) <= 5000
    assert {b[0].split()[0] for b in beginnings} >= {"anna", "ben", "sam"}
    for b in beginnings:
        assert sum(len(s.split()) for s in b) <= MAX_BEGINNING_TOKENS
        for m in default.middles(b):
            assert len(m.split()) <= MAX_MIDDLE_TOKENS and m.endswith(" .")
            for e in default.endings(b, m):
                assert len(e.split()) <= MAX_ENDING_TOKENS and e.endswith(" .")


def test_pronouns_agree(default):
    they = next(b for b in default.beginnings() if b[0].startswith("sam "))
    assert they[1].split()[0] == "they"
    for m in default.middles(they):
        assert m.split()[0] == "they" and not {"he", "she", "his", "her"} & set(m.split())
        for e in default.endings(they, m):
            assert not {"he", "she", "his", "her"} & set(e.split()) and "they was" not in e


# ---------------------------------------------------------------------- tokenizer


def test_tokenizer_round_trip_and_padding(tok, default):
    assert [tok.pad_id, tok.mask_id, tok.unk_id, tok.bos_id, tok.sep_id, tok.eos_id] \
        == list(range(6))
    assert tok.vocab_size == len(SPECIAL_TOKENS) + len(default.vocabulary())
    text = "anna wanted to bake a cake ."
    ids = tok.encode(text, length=10)
    assert len(ids) == 10 and ids[7:] == [tok.pad_id] * 3 and tok.pad_id not in ids[:7]
    assert tok.decode(ids) == text
    assert tok.decode([tok.encode("anna")[0], tok.mask_id, tok.pad_id]) == "anna _"
    batch = tok.encode_batch([text, "she gave up ."], length=8)
    assert batch.dtype == torch.long and batch.shape == (2, 8)
    assert tok.decode(batch[1]) == "she gave up ."
    with pytest.raises(ValueError, match="7 tokens, more than length=5"):
        tok.encode(text, length=5)


def test_tokenizer_strict_oov(tok):
    known = tok.vocab_size - len(SPECIAL_TOKENS)
    msg = f"words not in the vocabulary: ['zebra'] (the tokenizer knows {known} words)"
    with pytest.raises(ValueError, match=re.escape(msg)):
        tok.encode("anna saw a zebra .")
    assert tok.encode("anna saw a zebra .", strict=False)[3] == tok.unk_id


def test_check_ids(tok):
    tok.check_ids(torch.tensor([[0, tok.vocab_size - 1]]))
    with pytest.raises(ValueError, match=rf"\[0, {tok.vocab_size}\).*min -1 and max 3"):
        tok.check_ids(torch.tensor([-1, 3]))
    with pytest.raises(ValueError, match=f"max {tok.vocab_size}"):
        tok.check_ids(torch.tensor([0, tok.vocab_size]))


def test_tokenizer_save_load(tok, tmp_path):
    path = tmp_path / "tok.json"
    tok.save(path)
    again = StoryTokenizer.load(path)
    assert again.vocab_size == tok.vocab_size and again.words == tok.words
    assert again.encode("she fed the cat .", 7) == tok.encode("she fed the cat .", 7)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        StoryTokenizer.load(tmp_path / "nope.json")


def test_normalise():
    assert normalise("Anna's cat, Tom, ran!") == "anna ' s cat , tom , ran !"
    assert normalise("  She said \u201cHi.\u201d  ") == 'she said " hi . "'
    assert normalise(normalise("A b; C: d?")) == "a b ; c : d ?"


# ---------------------------------------------------------------------- ROCStories and tensors


def _write_rocstories(path, rows, columns=None):
    columns = columns or ["storyid", "storytitle", *(f"sentence{i}" for i in range(1, 6))]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(rows)


def test_load_rocstories(tmp_path):
    path = tmp_path / "roc.csv"
    _write_rocstories(path, [
        ["id1", "The Cat", "Anna's cat, Tom, ran!", "She chased him.", "He hid.",
         "She found him under the bed.", "Tom purred."],
        ["id2", "Cake", "Ben wanted cake.", "He had no flour.", "He went out.",
         "He BOUGHT flour; then he baked.", "It was great!"],
        ["id3", "Rain", "It rained.", "Sam was sad.", "Sam stayed in.", "Sam read.",
         "Sam felt \u201cbetter\u201d."],
    ])
    stories = load_rocstories_csv(path)
    assert len(stories) == 3
    assert stories[0].beginning == ("anna ' s cat , tom , ran !", "she chased him .", "he hid .")
    assert stories[0].middle == "she found him under the bed ."
    assert stories[0].ending == "tom purred ."
    assert stories[1].middle == "he bought flour ; then he baked ."
    assert stories[2].ending == 'sam felt " better " .'
    tok = StoryTokenizer.from_words(words_of(stories))
    data = encode_stories(stories, tok, beginning_len=40, middle_len=12, ending_len=12)
    assert data.middle.shape == (3, 12)
    assert tok.decode(data.beginning[0]) == " ".join(stories[0].beginning)


def test_rocstories_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not redistributable.*rochester"):
        load_rocstories_csv(tmp_path / "missing.csv")
    path = tmp_path / "bad.csv"
    _write_rocstories(path, [["a", "b", "c", "d"]],
                      columns=["sentence1", "sentence2", "sentence3", "sentence4"])
    with pytest.raises(ValueError, match=r"missing the columns \['sentence5'\]"):
        load_rocstories_csv(path)
    _write_rocstories(path, [["1", "t", "A.", "B.", "C.", "D.", "E."],
                             ["2", "t", "A.", "B.", "  ", "D.", "E."]])
    with pytest.raises(ValueError, match="row 2 .*empty sentence3"):
        load_rocstories_csv(path)


def test_encode_stories(small):
    tok = StoryTokenizer.from_words(small.vocabulary())
    stories = small.sample(12, seed=0)
    data = encode_stories(stories, tok)
    assert len(data) == 12
    assert data.beginning.shape == (12, MAX_BEGINNING_TOKENS)
    assert data.middle.shape == (12, MAX_MIDDLE_TOKENS)
    assert data.ending.shape == (12, MAX_ENDING_TOKENS)
    assert tok.decode(data.middle[5]) == stories[5].middle
    sub = data[torch.tensor([5, 2])]
    assert isinstance(sub, EncodedStories) and len(sub) == 2 and sub.stories[0] == stories[5]
    assert torch.equal(sub.ending[1], data.ending[2])
    assert len(data[data.middle[:, 0] == data.middle[0, 0]]) >= 1
    long_middle = "she fixed the oven the oven the oven ."  # 9 tokens > 7
    too_long = [*stories[:3], Story(CAKE, long_middle, "she baked a tasty cake .")]
    with pytest.raises(ValueError, match="story 3: its middle .*9 tokens, more than length=7"):
        encode_stories(too_long, tok)
