"""A chatbot-understanding data set the project generates itself (catalogue: ``chat-intents``).

    >>> parts = chat_intents(train=40, validation=10, test=10)
    >>> sorted(parts)
    ['test', 'train', 'validation']
    >>> sorted(parts["test"].columns)  # doctest: +NORMALIZE_WHITESPACE
    ['context', 'entities', 'intent', 'scope', 'sentiment', 'template',
     'text']

No intent/slot corpus ships inside a package that installs here (the one packaged NLU
engine we found, from 2020, keeps its benchmark data outside its wheel), so the rows are
drawn from templates. Each row is one user message:

- ``text``: the message, e.g. ``"ugh, book a flight from boston to paris next monday"``;
- ``context``: the previous user turn, or ``""``. A third of the in-scope rows are
  **follow-ups** ("what about tokyo?") whose intent only the context tells;
- ``intent``: one of :data:`INTENTS` or ``out_of_scope`` (other topics: trivia, arithmetic,
  car repair, ...);
- ``entities``: BIO tags, one per token of the ``word`` tokenizer (``O``, ``B-city``,
  ``I-city``, ...), for the slots in :data:`SLOTS`;
- ``sentiment``: ``positive`` / ``neutral`` / ``negative``, from a phrase added to the
  message ("thanks so much", "this is so frustrating");
- ``template`` (which template made the row) and ``scope`` (``in`` / ``out``).

**Held-out templates**: every intent's templates, the follow-up templates, the
out-of-scope templates and the sentiment phrases are each cut into disjoint train,
validation and test lists (about 60/20/20, fixed below, not drawn), so a test row never
reuses a sentence frame that training saw; slot values are shared. Thresholds picked on
the validation part therefore meet unseen frames too, as production traffic does.
Rows come from ``random.Random(seed)`` alone, so a seed gives the same rows everywhere.
"""

from __future__ import annotations

import random
import re
from typing import Any

import numpy as np

from layerwise.data.table import Table
from layerwise.data.text import _WORD
from layerwise.errors import DataError

PARTS = ("train", "validation", "test")
OUT_OF_SCOPE = "out_of_scope"
SIZES = {"train": 6000, "validation": 1500, "test": 1500}

SLOTS: dict[str, list[str]] = {
    "city": ["paris", "london", "new york", "tokyo", "berlin", "madrid", "rome", "chicago",
             "boston", "seattle", "toronto", "sydney", "dublin", "lisbon", "amsterdam",
             "san francisco", "los angeles", "mexico city", "cairo", "mumbai", "seoul",
             "oslo", "vienna", "prague", "athens", "denver", "miami", "rio de janeiro"],
    "date": ["today", "tomorrow", "tonight", "this weekend", "next monday", "friday",
             "saturday", "march 3rd", "the 21st of june", "next week", "sunday morning",
             "the day after tomorrow", "new year's eve", "july 4th", "thursday"],
    "time": ["7 am", "6:30", "7:45 pm", "noon", "midnight", "8 o'clock", "10 pm",
             "half past six", "9:15", "5 in the morning", "11:30 am", "quarter to eight"],
    "artist": ["taylor swift", "the beatles", "adele", "miles davis", "beyonce", "coldplay",
               "drake", "bob dylan", "radiohead", "nina simone", "daft punk", "queen",
               "billie eilish", "frank sinatra", "the rolling stones", "ed sheeran"],
    "genre": ["jazz", "rock", "hip hop", "classical music", "country", "lo-fi beats",
              "reggae", "blues", "heavy metal", "k-pop", "techno", "folk"],
    "dish": ["pizza", "a pepperoni pizza", "sushi", "pad thai", "a burger",
             "chicken tikka masala", "ramen", "tacos", "a caesar salad", "pho", "falafel",
             "fried rice", "a veggie wrap", "lasagna", "dumplings", "fish and chips"],
    "count": ["two", "three", "four", "five", "six", "2", "4", "8", "a dozen", "ten"],
    "account": ["checking", "savings", "credit card", "business account", "joint account",
                "checking account", "savings account", "retirement account"],
    "amount": ["$50", "200 dollars", "1,500 euros", "£30", "75 bucks", "$1,200", "90 pounds",
               "20 dollars", "$5", "300 euros", "a hundred dollars"],
    "person": ["mom", "john", "sarah", "my landlord", "alex", "david", "maria", "my brother",
               "emma", "dad", "kevin", "my roommate"],
    "cuisine": ["italian", "mexican", "thai", "indian", "japanese", "french", "chinese",
                "greek", "korean", "vietnamese", "ethiopian", "spanish"],
    "duration": ["10 minutes", "an hour", "30 seconds", "five minutes", "2 hours",
                 "90 seconds", "twenty minutes", "half an hour", "45 minutes"],
}

# per intent: templates for the train, validation and test parts (disjoint lists)
INTENTS: dict[str, tuple[list[str], list[str], list[str]]] = {
    "get_weather": (
        ["what's the weather in {city} {date}", "will it rain in {city} {date}",
         "weather forecast for {city}", "how hot will it be {date}",
         "do i need an umbrella in {city} {date}", "tell me the weather {date}",
         "what will the weather be like in {city}", "is it snowing in {city}",
         "any chance of storms {date}", "should i bring a jacket to {city} {date}"],
        ["is it going to be sunny in {city} {date}", "what is the temperature in {city}"],
        ["how cold is it in {city} right now", "give me the forecast for {date} in {city}"]),
    "book_flight": (
        ["book a flight from {city} to {city} {date}", "i need a plane ticket to {city}",
         "find me flights to {city} {date}", "get me on a flight to {city} {date}",
         "are there any flights from {city} to {city}", "i want to fly to {city} {date}",
         "book me a one way ticket to {city}", "looking for cheap flights to {city} {date}",
         "fly me from {city} to {city}", "i need to get to {city} by plane {date}"],
        ["reserve a seat on a flight to {city} {date}", "search flights from {city} to {city}"],
        ["i'd like to book airfare to {city} for {date}",
         "can you get me a ticket from {city} to {city} {date}"]),
    "play_music": (
        ["play some {artist}", "put on {genre}", "play {genre} by {artist}",
         "i want to listen to {artist}", "start a {genre} playlist", "play my {genre} mix",
         "put on the latest album by {artist}", "i'm in the mood for {genre}",
         "play a song by {artist}", "turn on some {genre} for me"],
        ["can you play something by {artist}", "shuffle some {genre}"],
        ["queue up songs from {artist}", "let's hear some {genre} music"]),
    "set_alarm": (
        ["set an alarm for {time}", "wake me up at {time} {date}",
         "set an alarm for {time} {date}", "i need an alarm at {time}",
         "alarm at {time} please", "make an alarm for {date} at {time}",
         "i have to be up by {time}", "please wake me {date} at {time}",
         "add an alarm at {time}", "set my alarm clock to {time}"],
        ["can you wake me at {time}", "create an alarm for {time} {date}"],
        ["get me up at {time} {date}", "schedule a wake up call for {time}"]),
    "order_food": (
        ["order {dish}", "i want to order {dish} for delivery", "get me {dish}",
         "order {count} portions of {dish}", "can i get {dish} delivered",
         "i'm hungry, order {dish}",
         "can you order me some {dish}", "i'd like {dish} for dinner",
         "get {count} plates of {dish} delivered", "food delivery: {dish} please"],
        ["place an order for {dish}", "deliver {dish} to my place"],
        ["i'd love some {dish} brought over", "send {count} orders of {dish} to my address"]),
    "check_balance": (
        ["what's my {account} balance", "how much money is in my {account}",
         "check my {account} balance", "show me the balance of my {account}",
         "what do i have in {account}", "balance of my {account} please",
         "how much have i got in {account}", "what's left in my {account}",
         "can you check how much is in my {account}", "current balance for {account}"],
        ["how much is left in my {account}", "tell me my {account} balance"],
        ["how much cash do i have in {account}", "what's the current total in my {account}"]),
    "transfer_money": (
        ["send {amount} to {person}", "transfer {amount} from my {account} to {person}",
         "pay {person} {amount}", "move {amount} to my {account}",
         "wire {amount} to {person}", "i want to send {person} {amount}",
         "pay back {person} {amount}", "send money to {person}, {amount}",
         "transfer {amount} into {account}", "please move {amount} from {account} to {person}"],
        ["transfer {amount} to {person} from {account}", "give {person} {amount}"],
        ["can you move {amount} over to {person}", "put {amount} into my {account}"]),
    "book_restaurant": (
        ["book a table for {count} at a {cuisine} place",
         "reserve a {cuisine} restaurant for {date} at {time}",
         "find a {cuisine} restaurant in {city}", "table for {count} {date} at {time}",
         "i need a dinner reservation for {count}", "get us a table at a {cuisine} spot",
         "reserve a table for {count} {date}", "any {cuisine} places in {city} with a table {date}",
         "book us a {cuisine} dinner at {time}", "i want to reserve a restaurant for {count}"],
        ["make a reservation for {count} at {time}", "book dinner at a {cuisine} place in {city}"],
        ["we'd like a {cuisine} restaurant {date} for {count}",
         "hold a table for {count} people at {time}"]),
    "set_timer": (
        ["set a timer for {duration}", "start a {duration} timer", "timer for {duration}",
         "count down {duration}", "remind me in {duration}", "set a {duration} countdown",
         "time {duration} please", "i need a timer, {duration}", "put a timer on for {duration}",
         "start the clock for {duration}"],
        ["can you time {duration} for me", "start counting down from {duration}"],
        ["let me know when {duration} have passed", "run a timer of {duration}"]),
}

# follow-ups: their intent is the context's; one slot from the context's intent fills them
FOLLOW_UPS: tuple[list[str], list[str], list[str]] = (
    ["what about {x}", "and {x}?", "how about {x} instead", "make it {x}",
     "actually {x}", "same but {x}", "change it to {x}", "{x} please", "no, {x}",
     "can you do {x}", "or maybe {x}", "{x} would be better"],
    ["what if it's {x}", "switch to {x}"],
    ["try {x} then", "no wait, {x}"])
FOLLOW_SLOTS = {"get_weather": ["city", "date"], "book_flight": ["city", "date"],
                "play_music": ["artist", "genre"], "set_alarm": ["time", "date"],
                "order_food": ["dish"], "check_balance": ["account"],
                "transfer_money": ["amount", "person"], "book_restaurant": ["time", "count"],
                "set_timer": ["duration"]}

FILLERS: dict[str, list[str]] = {
    "thing": ["flat tire", "leaky faucet", "broken zipper", "squeaky door", "slow laptop",
              "cracked phone screen", "clogged drain"],
    "animal": ["octopus", "elephant", "penguin", "honey bee", "giraffe", "shark", "owl"],
    "n": ["15", "seven", "42", "12", "nine", "100", "3"],
    "language": ["spanish", "german", "french", "japanese", "italian"],
    "team": ["lakers", "yankees", "patriots", "real madrid", "chelsea", "warriors"],
    "topic": ["black holes", "the roman empire", "photosynthesis", "volcanoes",
              "the french revolution", "quantum physics", "dinosaurs"],
}
OUT_OF_SCOPE_TEMPLATES: tuple[list[str], list[str], list[str]] = (
    ["how do i fix a {thing}", "tell me a fun fact about the {animal}",
     "what is {n} times {n}", "who won the {team} game last night", "tell me a joke",
     "explain {topic} to me", "how do you say hello in {language}",
     "what's the square root of {n}", "who wrote hamlet", "how long does a {animal} live",
     "are the {team} playing this season", "what's your favorite color",
     "what is the capital of australia", "how do i learn to swim", "recommend a good book",
     "why is the sky blue", "what are the symptoms of the flu", "how do magnets work",
     "give me a riddle", "who painted the mona lisa", "what year did the war end",
     "help me with my homework on {topic}", "how far is the moon", "sing me a song",
     "what's a good name for a {animal}", "do you have a pet", "how old are you",
     "where does the {animal} come from", "what is love", "can you dance", "how do i bake bread",
     "what is the best phone to buy", "how do i get rid of hiccups", "are you a robot",
     "what's the population of {language} speakers", "tell me about {topic}"],
    ["what rhymes with orange", "write a short poem about {topic}",
     "how many legs does a {animal} have", "can you teach me {language}"],
    ["how tall is mount everest", "what should i name my new {animal}",
     "summarize the history of {topic}", "is a {thing} dangerous",
     "who is the best player on the {team}", "what is the meaning of life"])

# sentiment phrases: the validation and test phrases are new combinations of words that
# training phrases use (a model that learns words from scratch cannot know an unseen word's
# tone), so what is held out is the phrasing, not the vocabulary
SENTIMENT: dict[str, tuple[list[str], list[str], list[str]]] = {
    "positive": (["thanks so much", "you're the best", "this is great", "awesome",
                  "i love this app", "perfect, thank you", "wonderful", "so helpful"],
                 ["great, thanks", "you're awesome", "i love it"],
                 ["awesome, thank you so much", "perfect", "this app is wonderful"]),
    "negative": (["ugh", "this is so frustrating", "i'm really annoyed", "this app is useless",
                  "seriously, for the third time", "terrible service", "i'm fed up",
                  "i hate this"],
                 ["so annoyed", "this is terrible", "ugh, useless"],
                 ["this is useless", "i hate this app", "so frustrating, seriously"]),
    "neutral": (["", "", "hi", "hello", "please", "quick question", "ok", "hey"],
                ["", "hello there", "ok so"],
                ["", "hey there", "hi, quick question"]),
}


def _tokens(s: str) -> list[str]:
    return _WORD.findall(s)


def _fill(template: str, values: dict[str, list[str]], rng: random.Random,
          tagged: bool) -> tuple[str, list[str]]:
    """A template's text and its BIO tags (``tagged=False``: every token is ``O``)."""
    text, tags = [], []
    for piece in re.split(r"(\{\w+\})", template):
        if piece.startswith("{"):
            slot = piece[1:-1]
            value = rng.choice(values[slot])
            toks = _tokens(value)
            tags += [f"{'B' if i == 0 else 'I'}-{slot}" if tagged else "O"
                     for i in range(len(toks))]
            text.append(value)
        else:
            tags += ["O"] * len(_tokens(piece))
            text.append(piece)
    return "".join(text), tags


def _with_sentiment(text: str, tags: list[str], phrase: str, rng: random.Random
                    ) -> tuple[str, list[str]]:
    """The message with its sentiment phrase in front ("ugh, ...") or behind ("..., ugh")."""
    if not phrase:
        return text, tags
    extra = ["O"] * (len(_tokens(phrase)) + 1)  # the phrase and its comma
    if rng.random() < 0.5:
        return f"{phrase}, {text}", extra + tags
    return f"{text}, {phrase}", tags + extra


def _utterance(intent: str, part: int, rng: random.Random) -> tuple[str, list[str], str]:
    """A full request of ``intent`` from ``part``'s templates: text, tags, template id."""
    templates = INTENTS[intent][part]
    k = rng.randrange(len(templates))
    text, tags = _fill(templates[k], SLOTS, rng, tagged=True)
    return text, tags, f"{intent}/{PARTS[part]}/{k}"


def _row(part: int, rng: random.Random, oos_share: float, follow_share: float
         ) -> dict[str, Any]:
    """One message: its text, context, intent, BIO tags, sentiment, template and scope."""
    intents = sorted(INTENTS)
    kind = rng.random()
    context = ""
    if kind < oos_share:
        templates = OUT_OF_SCOPE_TEMPLATES[part]
        k = rng.randrange(len(templates))
        text, tags = _fill(templates[k], FILLERS, rng, tagged=False)
        intent, template = OUT_OF_SCOPE, f"{OUT_OF_SCOPE}/{PARTS[part]}/{k}"
        if rng.random() < 0.5:
            context = _utterance(rng.choice(intents), part, rng)[0]
    elif kind < oos_share + follow_share:
        intent = rng.choice(intents)
        context = _utterance(intent, part, rng)[0]
        templates = FOLLOW_UPS[part]
        k = rng.randrange(len(templates))
        slot = rng.choice(FOLLOW_SLOTS[intent])
        text, tags = _fill(templates[k].replace("{x}", "{" + slot + "}"), SLOTS, rng, True)
        template = f"follow_up/{PARTS[part]}/{k}"
    else:
        intent = rng.choice(intents)
        text, tags, template = _utterance(intent, part, rng)
        if rng.random() < 0.5:
            context = _utterance(rng.choice(intents), part, rng)[0]
    sentiment = rng.choice(sorted(SENTIMENT))
    text, tags = _with_sentiment(text, tags, rng.choice(SENTIMENT[sentiment][part]), rng)
    if len(_tokens(text)) != len(tags):  # a template that glues a slot to a word
        raise DataError(f"chat-intents template {template!r}: {len(tags)} tags for "
                        f"{len(_tokens(text))} tokens of {text!r}")
    return {"text": text, "context": context, "intent": intent, "entities": " ".join(tags),
            "sentiment": sentiment, "template": template,
            "scope": "out" if intent == OUT_OF_SCOPE else "in"}


def chat_intents(train: int = SIZES["train"], validation: int = SIZES["validation"],
                 test: int = SIZES["test"], seed: int = 0, oos_share: float = 0.12,
                 follow_share: float = 0.25) -> dict[str, Table]:
    """The ``train``, ``validation`` and ``test`` parts, each from its own templates."""
    rng = random.Random(seed)
    parts = {}
    for p, (name, n) in enumerate(zip(PARTS, (train, validation, test), strict=True)):
        rows = [_row(p, rng, oos_share, follow_share) for _ in range(n)]
        cols = {k: np.array([r[k] for r in rows], dtype=object) for k in rows[0]} if rows \
            else {}
        parts[name] = Table(cols, f"catalogue:chat-intents/{name}")
    return parts
