"""A generated five-sentence story corpus with real causal structure and an exact oracle.

Every story follows one causal chain::

    s1  "{name} wanted to {goal} ."         who wants what
    s2  a preparation for that goal          depends on the goal and the pronoun
    s3  "but {obstacle} ."                   one of the goal's obstacles
    s4  the MIDDLE: an action                a fix for THIS obstacle, a generic action,
                                             an irrelevant action, or giving up
    s5  the ENDING: success or failure       how likely depends on the kind of action

All probabilities come from small tables, so p(middle | beginning), p(ending | beginning,
middle) and the RTB target p(m | b) p(e | b, m)^beta are exact: this is the oracle that
the story-infilling experiments compare against. Text is in normal form throughout:
lower-case words separated by single spaces, punctuation as its own token, and every
sentence ends with " .".

    grammar = StoryGrammar.small()
    b = grammar.beginnings()[0]
    grammar.middles(b)                    # {"she fixed the oven .": 0.15, ...}
    grammar.exact_posterior(b, "she baked a tasty cake .", beta=1.0)
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "GROUPS",
    "MAX_BEGINNING_TOKENS",
    "MAX_ENDING_TOKENS",
    "MAX_MIDDLE_TOKENS",
    "Action",
    "Character",
    "Goal",
    "Obstacle",
    "Story",
    "StoryGrammar",
]

MAX_MIDDLE_TOKENS = 7
MAX_ENDING_TOKENS = 8
MAX_BEGINNING_TOKENS = 24

# The four kinds of middle, in the order of `group_probs` and `success_probs`.
GROUPS = ("fix", "generic", "irrelevant", "give_up")

_PRONOUNS = {
    "he": {"subj": "he", "obj": "him", "pos": "his", "be": "was"},
    "she": {"subj": "she", "obj": "her", "pos": "her", "be": "was"},
    "they": {"subj": "they", "obj": "them", "pos": "their", "be": "were"},
}


def _clean(text: str) -> str:
    # Tolerate stray whitespace in queries; the grammar's own text is already clean.
    return " ".join(text.split())


def _n_tokens(text: str) -> int:
    return len(text.split())


@dataclass(frozen=True)
class Story:
    """One five-sentence story: beginning (s1-s3), middle (s4) and ending (s5)."""

    beginning: tuple[str, str, str]
    middle: str
    ending: str

    def __post_init__(self) -> None:
        beginning = tuple(self.beginning)
        if len(beginning) != 3:
            raise ValueError(f"a story's beginning has 3 sentences, got {len(beginning)}")
        object.__setattr__(self, "beginning", beginning)

    @property
    def sentences(self) -> tuple[str, str, str, str, str]:
        """The five sentences in order."""
        return (*self.beginning, self.middle, self.ending)

    @property
    def text(self) -> str:
        """The whole story as one string."""
        return " ".join(self.sentences)


@dataclass(frozen=True)
class Character:
    """A protagonist: a one-word name and a pronoun ("he", "she" or "they")."""

    name: str
    pronoun: str


@dataclass(frozen=True)
class Obstacle:
    """What goes wrong (s3 reads "but {text} .") and the actions that fix it.

    Templates may use {subj}, {obj}, {pos}, {be} (the pronoun's forms).
    """

    text: str
    fixes: tuple[str, ...]


@dataclass(frozen=True)
class Goal:
    """A goal: what the character wants and every sentence that depends on it.

    Attributes:
        verb: the infinitive phrase after "wanted to" ("bake a cake"), also {verb}.
        done: the past-tense phrase for achieving it ("baked the cake"), also {done}.
        preparations: candidate s2 sentences.
        obstacles: candidate s3 obstacles, each with its own fixes.
        success: the endings after a fix succeeds.
        failure: a goal-specific failure ending (shared by every kind of middle).
    """

    verb: str
    done: str
    preparations: tuple[str, ...]
    obstacles: tuple[Obstacle, ...]
    success: tuple[str, ...]
    failure: str


@dataclass(frozen=True)
class Action:
    """A generic middle (works for any goal) and its own success endings."""

    text: str
    success: tuple[str, ...]


@dataclass(frozen=True)
class _Situation:
    """The tables for one (character, goal, obstacle): everything after the beginning."""

    middles: dict[str, float]
    groups: dict[str, str]
    endings: dict[str, dict[str, float]]
    success: frozenset[str]
    # Cumulative tables for sampling by bisection.
    middle_keys: tuple[str, ...]
    middle_cdf: tuple[float, ...]
    ending_tables: dict[str, tuple[tuple[str, ...], tuple[float, ...]]]


def _cdf(probs: dict[str, float]) -> tuple[tuple[str, ...], tuple[float, ...]]:
    keys = tuple(probs)
    cdf = tuple(itertools.accumulate(probs[k] for k in keys))
    return keys, cdf


def _draw(keys: tuple[str, ...], cdf: tuple[float, ...], u: float) -> str:
    # min() guards against u landing above a cdf that sums to 1 - 1e-16.
    return keys[min(bisect.bisect_right(cdf, u * cdf[-1]), len(keys) - 1)]


@dataclass(frozen=True)
class StoryGrammar:
    """A story grammar with exact probabilities (natural log where logs appear).

    p(beginning) is uniform. p(middle | beginning) gives each group in `GROUPS` the weight
    in `group_probs` (renormalised over the non-empty groups), split evenly within the
    group. p(ending | beginning, middle) is success with `success_probs[group]`, split
    evenly over the middle's success phrasings, and failure otherwise, split evenly over
    the goal's failure sentence and the group's failure sentence. Success endings differ
    by group (a fix, help, luck, a late change of heart), so the ending carries
    information about the middle.

    Construction checks the length limits, the normal form, and that no two middles
    (or a success and a failure ending) of one beginning coincide.
    """

    characters: tuple[Character, ...]
    goals: tuple[Goal, ...]
    generic_actions: tuple[Action, ...]
    irrelevant_actions: tuple[str, ...]
    give_ups: tuple[str, ...]
    openers: tuple[str, ...] = ("wanted to",)
    irrelevant_success: tuple[str, ...] = ("{subj} {done} anyway .",
                                           "somehow {subj} still {done} .")
    give_up_success: tuple[str, ...] = ("{subj} {done} after all .",
                                        "a week later {subj} {done} .")
    # The second failure phrasing of each group, in GROUPS order.
    group_failures: tuple[str, str, str, str] = (
        "{subj} still could not {verb} .",
        "even that did not help .",
        "that did not help at all .",
        "{subj} {be} very disappointed .",
    )
    group_probs: tuple[float, float, float, float] = (0.3, 0.25, 0.3, 0.15)
    success_probs: tuple[float, float, float, float] = (0.9, 0.5, 0.1, 0.02)

    def __post_init__(self) -> None:
        self._check_parameters()
        situations: dict[tuple[int, int, int], _Situation] = {}
        index: dict[tuple[str, str, str], tuple[int, int, int]] = {}
        for ci, gi in itertools.product(range(len(self.characters)), range(len(self.goals))):
            character, goal = self.characters[ci], self.goals[gi]
            for oi, obstacle in enumerate(goal.obstacles):
                situations[ci, gi, oi] = self._build_situation(character, goal, obstacle)
                for beginning in self._beginnings_of(character, goal, obstacle):
                    if beginning in index:
                        raise ValueError(f"two stories share the beginning {beginning!r}")
                    index[beginning] = (ci, gi, oi)
        # Frozen dataclass: derived tables are stored past __setattr__ (they are not fields).
        object.__setattr__(self, "_situations", situations)
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_beginning_list", list(index))

    # ------------------------------------------------------------------ constructors

    @classmethod
    def small(cls) -> StoryGrammar:
        """An enumerable grammar: 2 characters, 2 goals, 2 obstacles each: 8 beginnings,
        8 middles per beginning."""
        full = cls.default()
        goals = tuple(
            Goal(g.verb, g.done, g.preparations[:1],
                 tuple(Obstacle(o.text, o.fixes[:2]) for o in g.obstacles[:2]),
                 g.success, g.failure)
            for g in (full.goals[0], full.goals[2])  # bake a cake, fly a kite
        )
        return cls(characters=full.characters[:2], goals=goals,
                   generic_actions=full.generic_actions[:2],
                   irrelevant_actions=full.irrelevant_actions[:3], give_ups=full.give_ups[:1])

    @classmethod
    def default(cls) -> StoryGrammar:
        """The full grammar: 8 characters, 8 goals with 3 obstacles and 4 preparations,
        3 openers: 2304 beginnings, 10 middles per beginning."""
        characters = tuple(Character(n, p) for n, p in [
            ("anna", "she"), ("ben", "he"), ("sam", "they"), ("mia", "she"),
            ("leo", "he"), ("alex", "they"), ("nora", "she"), ("omar", "he"),
        ])
        return cls(
            characters=characters,
            goals=_DEFAULT_GOALS,
            generic_actions=(
                Action("{subj} asked a friend for help .",
                       ("with help , {subj} {done} .", "{subj} {done} with help .")),
                Action("{subj} tried again .",
                       ("this time {subj} {done} .", "at last {subj} {done} .")),
                Action("{subj} looked online for advice .",
                       ("with the advice {subj} {done} .", "{subj} {done} using the advice .")),
            ),
            irrelevant_actions=("{subj} watched a movie .", "{subj} fed the cat .",
                                "{subj} called {pos} mother .", "{subj} took a long nap ."),
            give_ups=("{subj} gave up .", "{subj} stopped trying ."),
            openers=("wanted to", "hoped to", "decided to"),
        )

    # ------------------------------------------------------------------ exact tables

    def beginnings(self) -> list[tuple[str, str, str]]:
        """Every possible beginning (each has probability 1 / len(beginnings()))."""
        return list(self._beginning_list)

    def middles(self, beginning: Sequence[str]) -> dict[str, float]:
        """p(m | b) for every middle with positive probability (sums to 1)."""
        return dict(self._situation(beginning).middles)

    def endings(self, beginning: Sequence[str], middle: str) -> dict[str, float]:
        """p(e | b, m) for every ending with positive probability (sums to 1)."""
        situation = self._situation(beginning)
        middle = _clean(middle)
        if middle not in situation.endings:
            raise ValueError(f"{middle!r} is not a middle this grammar produces after the "
                             f"beginning {tuple(beginning)!r}; see middles(beginning)")
        return dict(situation.endings[middle])

    def middle_log_prob(self, beginning: Sequence[str], middle: str) -> float:
        """log p(m | b); -inf for a middle the grammar cannot produce after b."""
        p = self._situation(beginning).middles.get(_clean(middle), 0.0)
        return math.log(p) if p > 0 else -math.inf

    def ending_log_prob(self, beginning: Sequence[str], middle: str, ending: str,
                        floor: float = math.log(1e-4)) -> float:
        """log p(e | b, m), the oracle reward; `floor` when the grammar cannot produce the
        middle after b or the ending after (b, m), so ungrammatical samples get a finite
        (low) log-reward."""
        table = self._situation(beginning).endings.get(_clean(middle))
        p = 0.0 if table is None else table.get(_clean(ending), 0.0)
        return math.log(p) if p > 0 else floor

    def middle_group(self, beginning: Sequence[str], middle: str) -> str | None:
        """The middle's kind (one of `GROUPS`), or None if b cannot be followed by it."""
        return self._situation(beginning).groups.get(_clean(middle))

    def success_endings(self, beginning: Sequence[str]) -> frozenset[str]:
        """Every success ending that can follow b (all other endings are failures)."""
        return self._situation(beginning).success

    def exact_posterior(self, beginning: Sequence[str], ending: str,
                        beta: float) -> dict[str, float]:
        """p(m | b) p(e | b, m)^beta, normalised over the middles of b.

        Every middle of b is a key; middles that cannot lead to the ending get 0.
        """
        if not beta > 0 or not math.isfinite(beta):
            raise ValueError(f"beta must be a finite number > 0, got {beta}")
        situation = self._situation(beginning)
        ending = _clean(ending)
        # Log space: beta can be large enough that p^beta underflows.
        logs = {}
        for m, pm in situation.middles.items():
            pe = situation.endings[m].get(ending, 0.0)
            logs[m] = math.log(pm) + beta * math.log(pe) if pe > 0 else -math.inf
        top = max(logs.values())
        if top == -math.inf:
            raise ValueError(f"the ending {ending!r} cannot follow the beginning "
                             f"{tuple(beginning)!r} (no middle leads to it)")
        weights = {m: math.exp(v - top) for m, v in logs.items()}
        total = sum(weights.values())
        return {m: w / total for m, w in weights.items()}

    # ------------------------------------------------------------------ sampling

    def sample(self, n: int, seed: int,
               beginning: Sequence[str] | None = None) -> list[Story]:
        """`n` stories drawn from the grammar, deterministic in `seed`.

        With `beginning`, every story starts with it (middles and endings still random).
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        rng = np.random.default_rng(seed)
        if beginning is None:
            return self._sample_from(self._beginning_list, n, rng)
        self._situation(beginning)  # validates
        return self._sample_from([tuple(_clean(s) for s in beginning)], n, rng)

    def split(self, n_train: int, n_test: int, seed: int) -> tuple[list[Story], list[Story]]:
        """Train and test stories whose beginnings are disjoint (held-out beginnings).

        The beginnings are shuffled and a share proportional to n_test / (n_train + n_test)
        (at least one) is held out; stories are then sampled within each side::

            train, test = StoryGrammar.default().split(20000, 500, seed=0)
            # 20000 train stories over 2248 beginnings, 500 test stories over
            # 56 held-out beginnings
        """
        if n_train < 0 or n_test < 0:
            raise ValueError(f"n_train and n_test must be >= 0, got {n_train} and {n_test}")
        rng = np.random.default_rng(seed)
        total = len(self._beginning_list)
        if n_test == 0:
            k = 0
        elif n_train == 0:
            k = total
        else:
            if total < 2:
                raise ValueError("a held-out split needs a grammar with at least 2 beginnings")
            k = min(total - 1, max(1, round(total * n_test / (n_train + n_test))))
        order = rng.permutation(total)
        test_b = [self._beginning_list[i] for i in order[:k]]
        train_b = [self._beginning_list[i] for i in order[k:]]
        return self._sample_from(train_b, n_train, rng), self._sample_from(test_b, n_test, rng)

    def vocabulary(self) -> list[str]:
        """Every word of every sentence the grammar can produce, sorted."""
        words: set[str] = set()
        for beginning in self._beginning_list:
            for sentence in beginning:
                words.update(sentence.split())
        for situation in self._situations.values():
            for m, table in situation.endings.items():
                words.update(m.split())
                for e in table:
                    words.update(e.split())
        return sorted(words)

    # ------------------------------------------------------------------ internals

    def _situation(self, beginning: Sequence[str]) -> _Situation:
        if isinstance(beginning, str) or len(beginning) != 3:
            raise ValueError("a beginning is a sequence of 3 sentences, got "
                             f"{beginning!r}")
        key = tuple(_clean(s) for s in beginning)
        where = self._index.get(key)
        if where is None:
            raise ValueError(f"{key!r} is not a beginning of this grammar (it has "
                             f"{len(self._beginning_list)}; see beginnings())")
        return self._situations[where]

    def _sample_from(self, beginnings: list[tuple[str, str, str]], n: int,
                     rng: np.random.Generator) -> list[Story]:
        if n == 0:
            return []
        if not beginnings:
            raise ValueError("no beginnings to sample from")
        which = rng.integers(len(beginnings), size=n)
        u = rng.random((n, 2))
        stories = []
        for i in range(n):
            b = beginnings[which[i]]
            situation = self._situations[self._index[b]]
            m = _draw(situation.middle_keys, situation.middle_cdf, u[i, 0])
            e = _draw(*situation.ending_tables[m], u[i, 1])
            stories.append(Story(b, m, e))
        return stories

    def _beginnings_of(self, character: Character, goal: Goal,
                       obstacle: Obstacle) -> list[tuple[str, str, str]]:
        fill = self._filler(character, goal)
        s3 = f"but {fill(obstacle.text)} ."
        out = []
        for opener, prep in itertools.product(self.openers, goal.preparations):
            beginning = (_clean(f"{character.name} {opener} {goal.verb} ."), fill(prep), s3)
            n = sum(_n_tokens(s) for s in beginning)
            if n > MAX_BEGINNING_TOKENS:
                raise ValueError(f"beginning {beginning!r} has {n} tokens, more than "
                                 f"MAX_BEGINNING_TOKENS={MAX_BEGINNING_TOKENS}")
            for s in beginning:
                self._check_sentence(s, "beginning")
            out.append(beginning)
        return out

    def _filler(self, character: Character, goal: Goal) -> Callable[[str], str]:
        forms = {**_PRONOUNS[character.pronoun], "done": goal.done, "verb": goal.verb}
        return lambda template: _clean(template.format(**forms))

    def _build_situation(self, character: Character, goal: Goal,
                         obstacle: Obstacle) -> _Situation:
        fill = self._filler(character, goal)
        # (middle, group, success templates) for every candidate action.
        actions = [(fill(t), "fix", goal.success) for t in obstacle.fixes]
        actions += [(fill(a.text), "generic", a.success) for a in self.generic_actions]
        actions += [(fill(t), "irrelevant", self.irrelevant_success)
                    for t in self.irrelevant_actions]
        actions += [(fill(t), "give_up", self.give_up_success) for t in self.give_ups]
        sizes = {g: sum(1 for _, group, _ in actions if group == g) for g in GROUPS}
        weight = {g: p for g, p in zip(GROUPS, self.group_probs, strict=True) if sizes[g] > 0}
        total = sum(weight.values())
        if total <= 0:
            raise ValueError("group_probs give every non-empty group of middles weight 0")
        middles: dict[str, float] = {}
        groups: dict[str, str] = {}
        endings: dict[str, dict[str, float]] = {}
        success: set[str] = set()
        failure: set[str] = set()
        for middle, group, success_templates in actions:
            if middle in middles:
                raise ValueError(f"the middle {middle!r} occurs twice after one beginning")
            self._check_sentence(middle, "middle", MAX_MIDDLE_TOKENS)
            p_middle = weight.get(group, 0.0) / total / sizes[group]
            if p_middle <= 0:
                continue
            p_success = self.success_probs[GROUPS.index(group)]
            fails = (fill(goal.failure), fill(self.group_failures[GROUPS.index(group)]))
            table: dict[str, float] = {}
            for templates, p, seen in ((success_templates, p_success, success),
                                       (fails, 1.0 - p_success, failure)):
                for template in templates:
                    ending = fill(template)
                    self._check_sentence(ending, "ending", MAX_ENDING_TOKENS)
                    seen.add(ending)
                    if p > 0:
                        table[ending] = table.get(ending, 0.0) + p / len(templates)
            middles[middle], groups[middle], endings[middle] = p_middle, group, table
        if success & failure:
            raise ValueError(f"endings {sorted(success & failure)} are both a success and a "
                             "failure after one beginning")
        keys, cdf = _cdf(middles)
        return _Situation(middles=middles, groups=groups, endings=endings,
                          success=frozenset(success), middle_keys=keys, middle_cdf=cdf,
                          ending_tables={m: _cdf(t) for m, t in endings.items()})

    @staticmethod
    def _check_sentence(sentence: str, what: str, limit: int | None = None) -> None:
        if sentence != sentence.lower() or not sentence.endswith(" ."):
            raise ValueError(f"{what} {sentence!r} is not in normal form (lower-case, "
                             "ending with ' .')")
        if limit is not None and _n_tokens(sentence) > limit:
            raise ValueError(f"{what} {sentence!r} has {_n_tokens(sentence)} tokens, more "
                             f"than the limit of {limit}")

    def _check_parameters(self) -> None:
        if not self.characters or not self.goals or not self.openers:
            raise ValueError("a grammar needs at least one character, goal and opener")
        names = [c.name for c in self.characters]
        if len(set(names)) != len(names):
            raise ValueError(f"character names must be distinct, got {names}")
        for c in self.characters:
            if c.pronoun not in _PRONOUNS:
                raise ValueError(f"{c.name}'s pronoun must be one of {sorted(_PRONOUNS)}, "
                                 f"got {c.pronoun!r}")
            if _n_tokens(c.name) != 1 or c.name != c.name.lower():
                raise ValueError(f"character names are single lower-case words, got {c.name!r}")
        for g in self.goals:
            if not g.preparations or not g.obstacles or not g.success:
                raise ValueError(f"goal {g.verb!r} needs preparations, obstacles and success "
                                 "endings")
        if len(self.group_probs) != 4 or any(p < 0 for p in self.group_probs):
            raise ValueError(f"group_probs must be 4 weights >= 0 (for {GROUPS}), got "
                             f"{self.group_probs}")
        if len(self.success_probs) != 4 or any(not 0 <= p <= 1 for p in self.success_probs):
            raise ValueError(f"success_probs must be 4 probabilities in [0, 1] (for {GROUPS}), "
                             f"got {self.success_probs}")


def _goal(verb: str, done: str, preparations: Sequence[str],
          obstacles: Sequence[tuple[str, Sequence[str]]], success: Sequence[str],
          failure: str) -> Goal:
    return Goal(verb, done, tuple(preparations),
                tuple(Obstacle(text, tuple(fixes)) for text, fixes in obstacles),
                tuple(success), failure)


_DEFAULT_GOALS = (
    _goal("bake a cake", "baked the cake",
          ["{subj} bought flour and eggs .", "{subj} found {pos} old recipe book .",
           "{subj} cleaned the kitchen first .", "{subj} invited {pos} friends over ."],
          [("the oven was broken", ["{subj} fixed the oven .", "{subj} borrowed an oven ."]),
           ("the eggs were rotten", ["{subj} bought fresh eggs .",
                                     "{subj} got eggs from a farm ."]),
           ("the power went out", ["{subj} reset the fuse box .",
                                   "{subj} used a camping stove ."])],
          ["{subj} baked a tasty cake .", "the cake was delicious ."],
          "there was no cake that day ."),
    _goal("plant a garden", "planted the garden",
          ["{subj} bought seeds and a shovel .", "{subj} cleared a sunny patch .",
           "{subj} read about growing vegetables .", "{subj} picked a spot in the yard ."],
          [("the soil was too hard", ["{subj} watered the soil .", "{subj} dug up the soil ."]),
           ("birds ate the seeds", ["{subj} put up a scarecrow .", "{subj} covered the seeds ."]),
           ("it did not rain for weeks", ["{subj} bought a hose .",
                                          "{subj} carried buckets of water ."])],
          ["{subj} grew a lovely garden .", "the flowers bloomed all summer ."],
          "nothing grew in the garden ."),
    _goal("fly a kite", "flew the kite",
          ["{subj} went to the park .", "{subj} built a red kite .",
           "{subj} bought a kite at the store .", "{subj} waited for a sunny day ."],
          [("there was no wind", ["{subj} waited for a breeze .", "{subj} climbed a windy hill ."]),
           ("the string snapped", ["{subj} tied the string .", "{subj} bought a new string ."]),
           ("the kite got stuck in a tree", ["{subj} shook the tree .",
                                             "{subj} climbed up the tree ."])],
          ["{subj} flew the kite high .", "the kite soared in the sky ."],
          "the kite stayed on the ground ."),
    _goal("go fishing", "caught a fish",
          ["{subj} packed a rod and bait .", "{subj} woke up before dawn .",
           "{subj} drove to the lake .", "{subj} bought a fishing license ."],
          [("the lake was frozen", ["{subj} drilled through the ice .",
                                    "{subj} drove to a river ."]),
           ("the fish were not biting", ["{subj} tried a new bait .",
                                         "{subj} moved to a deeper spot ."]),
           ("the boat had a leak", ["{subj} patched the boat .", "{subj} rented another boat ."])],
          ["{subj} caught a big fish .", "{subj} brought home fresh fish ."],
          "{subj} caught nothing at all ."),
    _goal("win the race", "won the race",
          ["{subj} trained every morning .", "{subj} signed up for the race .",
           "{subj} ate a healthy breakfast .", "{subj} stretched before the start ."],
          [("{subj} hurt {pos} ankle", ["{subj} rested {pos} ankle .", "{subj} saw a doctor ."]),
           ("{pos} shoes fell apart", ["{subj} bought new shoes .", "{subj} glued {pos} shoes ."]),
           ("it rained on race day", ["{subj} practiced in the rain .",
                                      "{subj} wore shoes with spikes ."])],
          ["{subj} won the race .", "{subj} crossed the line first ."],
          "{subj} finished in last place ."),
    _goal("build a treehouse", "built the treehouse",
          ["{subj} gathered wood and nails .", "{subj} drew a careful plan .",
           "{subj} found a big oak tree .", "{subj} bought a new hammer ."],
          [("the saw was dull", ["{subj} sharpened the saw .", "{subj} borrowed a sharp saw ."]),
           ("the wood was rotten", ["{subj} bought fresh wood .", "{subj} used old pallets ."]),
           ("the branches were too weak", ["{subj} chose a stronger tree .",
                                           "{subj} added support posts ."])],
          ["{subj} built a sturdy treehouse .", "the treehouse stood for years ."],
          "the treehouse was never built ."),
    _goal("write a song", "wrote the song",
          ["{subj} sat down with {pos} guitar .", "{subj} bought a notebook .",
           "{subj} listened to {pos} favorite band .", "{subj} found a quiet room ."],
          [("{pos} guitar was out of tune", ["{subj} tuned the guitar .",
                                             "{subj} bought new strings ."]),
           ("{subj} could not find a melody", ["{subj} hummed a tune .",
                                               "{subj} listened to old records ."]),
           ("the neighbors were too loud", ["{subj} wore earplugs .",
                                            "{subj} moved to the attic ."])],
          ["{subj} wrote a beautiful song .", "everyone loved the new song ."],
          "the song was never finished ."),
    _goal("see the stars", "saw the stars",
          ["{subj} set up a telescope .", "{subj} drove out of town .",
           "{subj} stayed up late .", "{subj} packed a warm blanket ."],
          [("the sky was cloudy", ["{subj} waited for clear skies .",
                                   "{subj} drove above the clouds ."]),
           ("the lens was dirty", ["{subj} cleaned the lens .", "{subj} replaced the lens ."]),
           ("the city lights were too bright", ["{subj} drove to the country .",
                                                "{subj} turned off the lights ."])],
          ["{subj} saw many bright stars .", "{subj} saw the milky way ."],
          "{subj} saw no stars that night ."),
)
