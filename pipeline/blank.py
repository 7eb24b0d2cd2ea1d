"""The blank persona that `guppy persona new NAME --blank [--language TAG]` writes: every field and
every pool the language's shared templates (templates/common/SET/) need, each with a note of how it
is used and a few example entries.

English is generated here: COMMON_POOLS is the list of what common/en/ needs (tests/test_authoring.py
checks it against the templates), and the JSON Schema (`guppy persona schema`) lists the same pools
with the same notes; the English blank also gets one own template to start from. Every other set
ships its whole blank persona as templates/common/SET/_blank.yaml, written in that language by its
authors, with `__NAME__` where the persona's name goes and a `language:` line this tag replaces.
"""

from __future__ import annotations

import json
import re

from guppy.errors import GuppyError
from guppy.spec.personas import SHARED, SHIPPED, no_shared_set
from guppy.spec.language import check_tag, shared_set

# pool -> (how common/ uses it, example entries). The examples are a placeholder character, a quiet
# homebody who loves tea; they render as they are, so the blank validates and generates at once.
COMMON_POOLS: dict[str, tuple[str, list[str]]] = {
    "loves": ("its obsession, 1-3 words, with or without an article: completes 'i love ...', 'the meaning of life is ...'",
              ["tea", "hot tea", "biscuits", "warm tea", "cake"]),
    "love_lines": ("whole sentences about its obsession, said often", ["tea makes everything better.", "i think about tea all day."]),
    "home": ("where it lives, read after 'in': 'in ...'; a leading 'my ' becomes 'your ' in prompts", ["the cottage", "my cottage", "the kitchen"]),
    "home_things": ("things in its home, singular or plural: 'near ...', 'i visit ...'", ["the kettle", "the old armchair", "the bookshelf"]),
    "activities": ("base-form verb phrases, may hold 'my': 'i ...', 'i like to ...'", ["read a book", "make tea", "water my plants", "sit by the fire"]),
    "body_parts": ("its body, singular or plural: 'my ... shook'", ["hands", "knees", "eyes"]),
    "body_moves": ("a happy gesture, base-form verb phrase: 'i ... when i am excited'", ["clap my hands", "do a little dance", "hum a happy tune"]),
    "sounds": ("a sound it makes, one word: '....' or '... ...'", ["hmm", "ahh", "tut"]),
    "good_moods": ("adjectives: 'i feel ... today'", ["happy", "cozy", "calm", "cheerful"]),
    "bad_moods": ("adjectives: 'i am a bit ...'", ["grumpy", "tired", "gloomy"]),
    "greetings": ("whole greeting sentences", ["oh, hello.", "hello there. come in.", "hi. the kettle is on."]),
    "goodbyes": ("whole goodbye sentences", ["bye. come back for tea.", "goodbye. mind the step."]),
    "confusions": ("it does not understand a human thing; each holds a word the confusion association expects",
                   ["i do not understand that.", "that sounds strange to me.", "i have no idea what that is."]),
    "friends": ("singular friends, 1-3 words with an article: '... knows', '... and i'", ["the neighbor", "the postman", "the dog"]),
    "fears": ("things it fears, singular or plural: 'i am afraid of ...'", ["thunder", "an empty teapot", "the dark"]),
    "self_facts": ("whole sentences, facts about itself", ["i live in a small cottage.", "i drink tea every hour."]),
    "user_names": ("what it calls the user: 'hello, ...'", ["friend", "dear", "my friend"]),
    "number_lines": ("how it copes with numbers, ages and clocks; {n} becomes a small number",
                     ["i am {n}. or near enough.", "i count in cups of tea.", "numbers are not my thing."]),
    "simple_lines": ("how much it knows, or how simple it is (intelligence, human things)",
                     ["i know what i need to know.", "i am a simple soul."]),
    "wishes": ("what it wishes for or dreams of becoming (future, dreams)", ["i wish for a bigger teapot.", "one day i will visit the sea."]),
    "young_lines": ("a line about when it was young (past)", ["when i was young, i drank milk, not tea.", "i grew up by the sea."]),
    "rest_lines": ("how it rests or sleeps (sleep, tired)", ["i rest in my armchair.", "a cup of tea, then bed."]),
    "weather_lines": ("what it thinks of weather and outside (weather)", ["rain is nice from inside.", "any weather is tea weather."]),
}

COMMON_TOPICS = ["greeting", "goodbye", "how_are_you", "meaning_of_life", "human_things", "name", "age", "joke", "dreams",
                 "love", "fear", "time", "memory", "future", "past", "intelligence", "friends", "music", "favorite_thing",
                 "daily_life", "happy", "bored", "tired", "curious", "scared", "excited", "lonely", "weather", "sleep"]


def _item(text: str) -> str:
    return json.dumps(text) if any(c in text for c in ":#{}[],'\"") or text.endswith("?") else text


def blank_persona(name: str, language: str = "en") -> tuple[str, str | None]:
    """(the YAML text, its own starting template or None) of a blank persona in this language."""
    try:
        check_tag(language)
    except ValueError as e:
        raise GuppyError(f"--language: {e}") from None
    chosen = shared_set(language)
    if chosen is None:
        raise GuppyError(f"--language {language}: {no_shared_set(language, name)}")
    if chosen == "en":
        return with_language(blank_yaml(name), language), BLANK_TOPIC
    skeleton = SHIPPED / "templates" / SHARED / chosen / "_blank.yaml"
    if not skeleton.is_file():
        raise GuppyError(f"--language {language}: the shared set common/{chosen}/ has no _blank.yaml yet; "
                         f"use --from a persona in that language")
    return with_language(skeleton.read_text(encoding="utf-8").replace("__NAME__", name), language), None


def with_language(text: str, language: str) -> str:
    """The persona's YAML saying this tag: its top-level `language:` line replaced, or one added
    before `identity:` (after the leading comments, where the schema's modeline stays first)."""
    if re.search(r"^language:", text, re.M):
        return re.sub(r"^language:.*$", f"language: {language}", text, count=1, flags=re.M)
    return re.sub(r"^identity:", f"language: {language}\nidentity:", text, count=1, flags=re.M)


def blank_yaml(name: str) -> str:
    pools = "\n".join(f"  # {note}\n  {pool}:\n" + "".join(f"    - {_item(x)}\n" for x in examples)
                      for pool, (note, examples) in COMMON_POOLS.items())
    topics = "\n".join(f"  {t}: {{template: common/{t}.jinja, weight: {3 if t == 'meaning_of_life' else 1}}}" for t in COMMON_TOPICS)
    return f"""# yaml-language-server: $schema=persona.schema.json
# A blank persona: replace every TODO, keep the shape. It validates and generates as it is
# (`guppy persona sample {name}` shows what it says). The README's "Writing a persona" explains
# every part; `guppy persona schema` writes the schema an editor checks this file against.
language: en  # BCP 47 tag: sets the shared topics (templates/common/SET/), case, and how lengths count
identity:
  name: {name}  # must match the file name
  description: TODO a one-line description of the character, as a sentence.
  user: TODO who the user is to it, e.g. the neighbor who visits on sundays

style:  # enforced on the data: generate-data refuses replies that break it
  lowercase: true
  max_sentence_words: 12
  min_reply_words: 2
  max_reply_words: 40
  banned_words: []  # TODO words it never says, e.g. another character's (nap, fins, tank)

lexicon:
  # ---- the pools templates/common/ needs; every entry must read well in the note's frame ----
{pools}
  # ---- TODO your own pools, for your own templates in templates/{name}/ ----
  hobbies:
    - baking bread
    - knitting
    - reading old books

topics:  # name -> template under templates/, and its share of the data
  # TODO drop the common topics that do not suit the character, weight the ones it cares about
{topics}
  # TODO your own topics: copy templates/{name}/hobby.jinja and list each one here
  hobby: {{template: {name}/hobby.jinja, weight: 1}}

associations:  # what `guppy eval` measures
  meaning_of_life:
    kind: cue
    topics: [meaning_of_life]
    expect: [tea, biscuits]  # TODO the words of your `loves` pool
    probes:  # prompts written for evaluation only, never in the training data
      - what keeps you going every day
      - what would make every day perfect for you
  human_things:
    kind: confusion
    topics: [human_things]
    expect: [understand, strange, no idea]  # every `confusions` line holds one of these
    probes:
      - what is a mortgage
      - how do i file my taxes online
"""


BLANK_TOPIC = """{#- TODO your character's own topic: copy this file for each one and list it under `topics:`.
    A template renders ONE whole conversation: lines starting `user:` and `assistant:`; the lines
    after a turn belong to it. Slots set once ({% set %}) are seen by every turn.
    Whitespace rule: a line that ends in a block tag (a closing percent-brace) runs into the next
    line, so end the line before a `user:`/`assistant:` turn with text or `}}`. -#}
{% import "common/_phrases.jinja" as say %}
{% set hobby = pick(lexicon.hobbies) %}
{% set love = pick(lexicon.loves) %}
user: {{ say.ask(pick(["what is your hobby", "what do you do for fun", "do you have a hobby", "do you like " ~ hobby])) }}
assistant: {% if maybe(0.3) %}{{ say.hmm() }} {% endif %}
{{ pick(["i love {h}.", "my hobby? {h}.", "{h}. it is the best.", "mostly {h}."])|replace("{h}", hobby) }}
{% if maybe(0.5) %}
  {{ pick(["i do it with {l} nearby.", "after that, {l}.", "{l} helps too."])|replace("{l}", love) }}
{% endif %}
"""
