"""The embedded extractor and consolidator: rules, no LLM, no model download.

:class:`OfflineExtractor` reads only what the user wrote. It splits each message into sentences
and clauses, drops fillers ("well,", "honestly", "lol"), questions and hypotheticals, and matches
the rest against hand-written patterns for self statements, preferences, changes, standing
instructions, plans and dated events, and requests to forget. Every match becomes a clean
first-person fact ("I prefer dark mode.") with a topic, a confidence and, where the statement
fills a known slot, a ``subject`` such as ``"personal:location"`` or ``"preference:ui mode"``.

:class:`OfflineConsolidator` reconciles those facts with the stored neighbours the caller found:
near-duplicates are skipped, a new value for a known slot updates the old memory, a retraction
deletes what it names, and within one batch the later statement about a slot wins.

Both are deliberately conservative: a sentence no rule understands is skipped, never guessed at.
See ``docs/extraction.md`` for the decisions (wishes, reported speech, custom topics) and limits.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Literal

from .base import Consolidator, Extractor
from .types import (
    EXPLICIT_INSTRUCTIONS,
    KEY_CONVERSATION_DETAILS,
    MANAGED_TOPICS,
    USER_PERSONAL_INFO,
    USER_PREFERENCES,
    Action,
    Candidate,
    EventOutcome,
    Existing,
    ExtractionResult,
    SourceEvent,
    Topic,
)

__all__ = [
    "BATCH_PREFIX",
    "CONFIDENT",
    "HEDGED",
    "OfflineConsolidator",
    "OfflineExtractor",
    "Statement",
    "content_words",
    "parse_statements",
    "split_sentences",
]

#: Confidence of a plain statement, and of a hedged, wished or second-hand one.
CONFIDENT = 0.9
HEDGED = 0.6

PERSONAL = USER_PERSONAL_INFO
PREFS = USER_PREFERENCES
DETAILS = KEY_CONVERSATION_DETAILS
INSTRUCTIONS = EXPLICIT_INSTRUCTIONS

# Outcome reasons, shown to people next to each event.
NOT_USER = "not authored by the user"
NO_TEXT = "no text"
NOTHING = "no memorable statement"
NOT_REQUESTED = "no statement for the requested topics"


@dataclass(frozen=True, slots=True)
class Statement:
    """One memorable statement rewritten as a standalone fact.

    ``topics`` lists the managed topics that fit, best first; the extractor keeps the first one
    the caller asked for.
    """

    fact: str
    topics: tuple[str, ...]
    subject: str | None = None
    confidence: float = CONFIDENT
    is_retraction: bool = False


# --------------------------------------------------------------------------------------------
# Text clean-up
# --------------------------------------------------------------------------------------------

_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u201c": '"', "\u201d": '"', "\u00a0": " "})
_EMOJI = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf\ufe0f\u200d]+")
_EMOTICON = re.compile(r"(?:(?<=\s)|^)(?:[:;=8][-']?[()\[\]dDpP/\\|*3oO]+|<3+|[xX][dD]+|\^_\^)(?=\s|$|[.,!?])")
# Chat spellings without apostrophes; only unambiguous ones ("ill", "id", "were" are words).
_CHAT_SPELLINGS = {
    "im": "I'm", "ive": "I've", "dont": "don't", "doesnt": "doesn't", "didnt": "didn't",
    "cant": "can't", "isnt": "isn't", "arent": "aren't", "wasnt": "wasn't", "havent": "haven't",
    "thats": "that's", "whats": "what's", "wouldnt": "wouldn't", "couldnt": "couldn't", "i": "I",
    "i'm": "I'm", "i've": "I've", "i'd": "I'd", "i'll": "I'll", "u": "you", "ur": "your",
    "pls": "please", "plz": "please", "thx": "thanks",
}
_CHAT_WORD = re.compile(r"\b(?:" + "|".join(re.escape(w) for w in _CHAT_SPELLINGS) + r")\b", re.IGNORECASE)

_LEADING_FILLER = re.compile(
    r"^(?:(?:oh|ah|um+|uh+|er+|hmm+|well|so|ok(?:ay)?|alright|all right|yeah|yes|yep|right|"
    r"anyway(?:s)?|btw|by the way|fyi|honestly|to be honest|tbh|frankly|actually|just so you know|"
    r"for the record|also|and|but|plus|lol|haha+|hehe+|basically|literally|no wait|wait no|wait|sorry|oh wait|"
    r"fun fact|funnily enough|you know what|you know|guess what|hey there|hi there|hello there|hey|hi|"
    r"hello|good (?:morning|afternoon|evening)|dear \w+|oh and|and also|one more thing|"
    r"quick note|side note|update)\b[\s,:;.!-]*|(?:like|see|look|listen|no|nope|nah)\s*[,.!]\s*)",
    re.IGNORECASE,
)
_TRAILING_FILLER = re.compile(
    r"[\s,;:-]*\b(?:lol|lmao|rofl|haha+|hehe+|tbh|honestly|btw|by the way|though|you know|ok(?:ay)?|"
    r"just saying|fyi|for the record|thanks|thank you|please|pls)\s*$",
    re.IGNORECASE,
)
_HEDGE_LEADING = re.compile(
    r"^(?:i think|i guess|i believe|i suppose|i feel like|i'd say|i reckon|i'm pretty sure|"
    r"i am pretty sure|maybe|probably|perhaps|possibly|i'm not sure but|i am not sure but|not sure but|"
    r"i might be wrong but|if i remember correctly|iirc|apparently)\b(?:\s+that\b)?[\s,]*",
    re.IGNORECASE,
)
_HEDGE_TRAILING = re.compile(
    r"[\s,]*\b(?:i think|i guess|i believe|i suppose|probably|maybe|perhaps)\s*$", re.IGNORECASE
)
_HEDGE_INLINE = re.compile(
    r"\b(?:kind of|sort of|kinda|sorta|probably|maybe|perhaps|possibly|somewhat)\s+", re.IGNORECASE
)
_SPACES = re.compile(r"\s+")
_EDGE_PUNCT = re.compile(r"^[\s\-–—*•>\"'(,;:]+|[\s\-–—*\"',;:]+$")
_END_PUNCT = re.compile(r"[\s.!?…]+$")

# Abbreviations that end with a dot but not a sentence.
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st mt ave jr sr vs etc e.g i.e approx no dept inc ltd co corp jan feb mar apr "
    "jun jul aug sep sept oct nov dec u.s u.k a.m p.m".split()
)
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+|\s*\n+\s*|\s*;\s+|\s+[-–—]{1,2}\s+")


def _squash(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def split_sentences(text: str) -> list[str]:
    """Split a message into sentences, keeping a sentence's final ``?``/``!``."""
    text = text.translate(_QUOTES)
    pieces = [p for p in _SENTENCE_END.split(text) if p and p.strip()]
    sentences: list[str] = []
    for piece in pieces:
        piece = piece.strip()
        if sentences:
            last = sentences[-1].rstrip()
            word = last.rsplit(" ", 1)[-1].rstrip(".").lower()
            # "Dr. Smith", "St. Louis", "5 p.m. on Friday": the dot ended an abbreviation.
            if last.endswith(".") and (word in _ABBREVIATIONS or len(word) == 1):
                sentences[-1] = f"{last} {piece}"
                continue
        sentences.append(piece)
    return [s for s in sentences if _squash(s)]


def _clean(text: str) -> str:
    """Normalise quotes and chat spellings and drop emoji, emoticons and leading/trailing fillers."""
    text = text.translate(_QUOTES)
    text = _EMOJI.sub(" ", text)
    text = _EMOTICON.sub(" ", text)
    text = _CHAT_WORD.sub(lambda m: _CHAT_SPELLINGS[m.group(0).lower()], text)
    text = _squash(text)
    previous = None
    while previous != text:
        previous = text
        text = _EDGE_PUNCT.sub("", text)
        text = _LEADING_FILLER.sub("", text)
        text = _TRAILING_FILLER.sub("", _END_PUNCT.sub("", text))
        text = text.strip()
    return text


def _finish(text: str) -> str:
    """Return ``text`` as a fact: squashed, capitalised, ending with one period."""
    text = _END_PUNCT.sub("", _squash(text)).strip(" ,;:-")
    text = re.sub(r"\bi\b", "I", text)
    if text and text[0].islower():
        text = text[0].upper() + text[1:]
    return f"{text}." if text else ""


# --------------------------------------------------------------------------------------------
# Words: crude lemmas for topic matching and for comparing facts
# --------------------------------------------------------------------------------------------

_STOPWORDS = frozenset(
    """a an the and or but if then so than that this these those there here it its it's i me my mine
    myself we us our ours you your yours he him his she her they them their what which who whom whose
    when where why how am is are was were be been being have has had having do does did doing will
    would shall should can could may might must to of in on at by for with about against between into
    through during before after above below from up down out off over under again further once all
    any both each few more most other some such only own same too very just also really quite
    actually now still currently anymore any more much many lot lots bit s t don't doesn't didn't
    isn't aren't wasn't weren't won't wouldn't can't cannot couldn't shouldn't i'm i've i'd i'll
    we're we've you're let's as because while until since like yes no not never always usually often
    sometimes ever get got go going gone make made thing things stuff something anything everything
    way kind sort one ones ok okay well oh please thanks thank user user's users information info
    detail details fact facts memory memories topic topics related relating including include
    includes etc e.g i.e such whether either someone somebody people person new old""".split()
)
# Verbs and adjectives that frame a statement but carry no value ("I like X" vs "I like Y").
_FRAME_WORDS = frozenset(
    """like love enjoy prefer hate dislike adore detest loathe want live work have use eat play speak
    call called name named favourite favorite think feel know need try am be is want wish hope plan
    planning moved move switched switch started start stopped stop quit become became prefer
    preferred remember forget answer reply respond write mode""".split()
)
_NEGATIONS = frozenset("not no never nor without hate dislike detest loathe longer n't stopped quit".split())
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
# Plurals in -ies whose singular ends in -ie, not -y ("movies", not "movy").
_IE_WORDS = frozenset(
    "movie cookie zombie selfie hippie rookie calorie brownie smoothie pie tie lie genie hoodie "
    "indie newbie veggie foodie goalie techie roomie birdie aussie".split()
)


@lru_cache(maxsize=8192)
def _lemma(word: str) -> str:
    """Return a crude lemma: possessive and plural dropped, then -ing/-ed and a final e."""
    w = word.lower().removesuffix("'s")
    if w.endswith("ies") and w[:-1] in _IE_WORDS:
        w = w[:-1]
    elif len(w) > 4 and w.endswith("ies"):
        w = w[:-3] + "y"
    elif len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    for suffix, keep in (("ing", 3), ("ed", 3)):
        if w.endswith(suffix) and len(w) - len(suffix) >= keep:
            w = w[: -len(suffix)]
            # "running" -> "runn" -> "run", "travelled" -> "travell" -> "travel".
            if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "ls":
                w = w[:-1]
            elif len(w) > 3 and w[-1] == w[-2] == "l":
                w = w[:-1]
            break
    if len(w) > 3 and w.endswith("e"):
        w = w[:-1]
    return w


def _tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower().translate(_QUOTES))


def content_words(text: str) -> frozenset[str]:
    """Return the lemmatised content words of ``text`` (stopwords dropped)."""
    return frozenset(_lemma(t) for t in _tokens(text) if (t not in _STOPWORDS and len(t) > 1) or t.isdigit())


def _value_words(text: str) -> frozenset[str]:
    """Return the content words that carry the value of a statement (frame verbs dropped)."""
    frame = {_lemma(w) for w in _FRAME_WORDS}
    return frozenset(w for w in content_words(text) if w not in frame)


def _negative(text: str) -> bool:
    """Tell whether a statement is negated ("I don't like sushi", "I no longer eat meat")."""
    low = text.lower().translate(_QUOTES)
    words = set(_WORD.findall(low.replace("n't", " n't")))
    return bool(words & _NEGATIONS) or "n't" in low or "can't stand" in low


def _key(phrase: str, limit: int = 3) -> str:
    """Return a short normalised key for a noun phrase ("the Italian foods" -> "italian food")."""
    words = [_plain(t) for t in _tokens(phrase) if t not in _STOPWORDS]
    return " ".join(words[:limit])


def _plain(word: str) -> str:
    """Return ``word`` without a plural s (keys stay readable: "window seats" -> "window seat")."""
    w = word.removesuffix("'s")
    if w.endswith("ies") and w[:-1] in _IE_WORDS:
        return w[:-1]
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


# --------------------------------------------------------------------------------------------
# Sentence gates: questions, hypotheticals, polite requests, hedges
# --------------------------------------------------------------------------------------------

_WH_QUESTION = re.compile(r"^(?:what|what's|who|who's|why|how|how's|which|whose|whom)\b", re.IGNORECASE)
_AUX_QUESTION = re.compile(
    r"^(?:do|does|did|am|is|are|was|were|can|could|would|will|should|shall|have|has|may|might|"
    r"isn't|aren't|don't|doesn't|didn't|wasn't|won't|wouldn't|shouldn't|can't)\s+"
    r"(?:i|you|my|we|it|he|she|they|there|this|that|your|our|anyone|someone)\b"
    r"|^(?:when|where)\s+(?:is|are|was|were|do|does|did|will|can|should|would|'s)\b",
    re.IGNORECASE,
)
_POLITE_REQUEST = re.compile(
    r"^(?:can|could|would|will)\s+you\s+(?:please\s+|kindly\s+)?"
    r"(?P<rest>(?:remember|note|keep in mind|make a note|forget|always|never|stop|call me|use|answer|reply|"
    r"respond|speak|talk|write|keep|don't|do not|avoid|address me)\b.*)$",
    re.IGNORECASE,
)
_HYPOTHETICAL = re.compile(
    r"^(?:if|suppose|supposing|imagine|assuming|what if|hypothetically|in theory|let's say|say that|"
    r"unless|even if|in a perfect world|in another life)\b"
    r"|\bif (?:i|we) (?:were|was|had|could|won|lived|didn't|did|got|became|ever)\b"
    r"|^(?:i|we)(?:'d|\s+would|\s+could|\s+might)\s+(?:have|be|buy|go|move|quit|live|get|never|probably|"
    r"definitely|totally|rather|not|just|want|need|say|do|take|try|use|pick|choose)\b"
    r"|^(?:i|we)(?:'d|\s+would)(?!\s+(?:really\s+)?(?:love|like|prefer|appreciate)\b)",
    re.IGNORECASE,
)
_NOT_A_CLAIM = re.compile(
    r"^(?:i don't think|i do not think|i'm not sure|i am not sure|i wonder|i was wondering|i'm wondering|"
    r"i can't remember|i don't remember|i don't know|i do not know|i forgot|i mean|i see|i agree|"
    r"i understand|i hope you|i need help|i need some help|i have a question|i've got a question|"
    r"i'm just|i am just|i'm trying|i am trying|i'm looking for|i am looking for|i was just|"
    r"i'm asking|i am asking|i'm curious|i was thinking|i'll let you know|let me|thanks|thank you)\b",
    re.IGNORECASE,
)
_CLAUSE_SPLIT = re.compile(
    r"(?:,\s*|\s+)(?:and|but|so|plus|although|though|whereas|while)\s+(?:also\s+)?"
    r"(?=(?:i|i'm|i've|i'll|i'd|my|we|we're|our)\b)"
    r"|,\s+(?=(?:i|i'm|i've|my|we|we're)\s+(?!mean\b|guess\b|think\b|suppose\b))"
    r"|,\s+(?=(?:call me|always|never|please)\b)",
    re.IGNORECASE,
)


def _is_question(raw: str, text: str) -> bool:
    """Tell whether a sentence (``raw``, and ``text`` without fillers) asks rather than states."""
    return raw.rstrip(" )\"'").endswith("?") or bool(_WH_QUESTION.match(text) or _AUX_QUESTION.match(text))


def _clauses(text: str) -> list[str]:
    """Split "I'm a nurse and I live in Berlin" into clauses; keep short heads ("my sister and I ...")."""
    parts = _CLAUSE_SPLIT.split(text)
    clauses: list[str] = []
    for part in parts:
        part = part.strip(" ,")
        if not part:
            continue
        if clauses and len(clauses[-1].split()) < 3 and not re.match(r"^(?:i|i'm|i've|we|we're)\b", clauses[-1], re.I):
            clauses[-1] = f"{clauses[-1]} and {part}"
        else:
            clauses.append(part)
    return clauses


def _unhedge(text: str) -> tuple[str, bool]:
    """Return ``text`` without hedges ("I think", "maybe", "kind of") and whether it had any."""
    hedged = False
    for pattern in (_HEDGE_LEADING, _HEDGE_TRAILING, _HEDGE_INLINE):
        new = pattern.sub("", text) if pattern is not _HEDGE_LEADING else pattern.sub("", text, count=1)
        if new != text:
            hedged, text = True, _squash(new)
    # "I might be moving" is as unsure as "maybe I'm moving".
    if re.match(r"^(?:i|we)\s+(?:might|may)\b", text, re.IGNORECASE):
        hedged = True
    return text, hedged


# --------------------------------------------------------------------------------------------
# Vocabularies
# --------------------------------------------------------------------------------------------

_MONTH = (
    r"(?:january|february|march|april|may|june|july|august|september|october|november|december|"
    r"jan|feb|mar|apr|jun|jul|aug|sept?|oct|nov|dec)"
)
_DAY = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday|mon|tue|tues|wed|thu|thurs|fri|sat|sun)"
_NUMBER_WORD = r"(?:a|an|one|two|three|four|five|six|seven|eight|nine|ten|a few|a couple of|several|\d+)"
_PERIOD = r"(?:week|month|year|weekend|summer|winter|spring|fall|autumn|semester|term|quarter|season)"
# Dates and times that anchor a plan or an event; "later" and "soon-ish" chatter is left out.
_TIME = re.compile(
    rf"\b(?:tomorrow|tonight|the day after tomorrow|next\s+(?:{_PERIOD}|{_DAY}|{_MONTH}|time)|"
    rf"this\s+(?:{_PERIOD}|{_DAY}|morning|afternoon|evening)|last\s+(?:{_PERIOD}|{_DAY}|night)|"
    rf"on\s+(?:the\s+)?(?:{_DAY}|\d{{1,2}}(?:st|nd|rd|th)?\b)|in\s+(?:early\s+|late\s+|mid-?\s*)?{_MONTH}\b|"
    rf"in\s+(?:19|20)\d\d\b|since\s+(?:19|20)\d\d\b|in\s+{_NUMBER_WORD}\s+(?:days?|weeks?|months?|years?)|"
    rf"{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?\b|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}\b|"
    rf"{_NUMBER_WORD}\s+(?:days?|weeks?|months?|years?)\s+ago|\d{{4}}-\d\d-\d\d|\b\d{{1,2}}/\d{{1,2}}(?:/\d{{2,4}})?|"
    rf"at\s+\d{{1,2}}(?::\d\d)?\s*(?:am|pm|a\.m\.|p\.m\.|o'clock)?|\d{{1,2}}(?::\d\d)?\s*(?:am|pm)\b|"
    rf"(?:end|beginning|start|middle)\s+of\s+(?:the\s+|this\s+|next\s+)?(?:{_PERIOD}|{_MONTH})|"
    rf"by\s+(?:{_DAY}|{_MONTH}|the end|tomorrow|next)|soon|someday|one day|this coming\s+\w+|"
    rf"on\s+{_MONTH}|over\s+the\s+(?:weekend|holidays|summer)|for\s+(?:christmas|thanksgiving|easter|"
    rf"new year's|the holidays|my birthday)|in\s+(?:the\s+)?(?:spring|summer|fall|autumn|winter)|"
    rf"recently|yesterday|today|(?:19|20)\d\d)\b",
    re.IGNORECASE,
)
# Time words too short-lived to make a past event memorable by themselves.
_SHORT_LIVED = re.compile(r"\b(?:today|yesterday|tonight|this morning|this afternoon|this evening|recently)\b", re.I)

_RELATIONS = (
    r"(?:wife|husband|partner|spouse|girlfriend|boyfriend|fianc[eé]e?|mom|mum|mother|mommy|mama|dad|"
    r"father|daddy|papa|parents|son|daughter|kids?|children|child|baby|babies|sister|brother|siblings?|"
    r"twin|grandma|grandmother|granny|grandpa|grandfather|grandparents|grandson|granddaughter|"
    r"grandchildren|grandkids?|aunt|uncle|cousin|niece|nephew|friend|friends|best friend|bff|boss|"
    r"manager|colleague|coworker|co-worker|teammate|roommate|flatmate|housemate|neighbou?r|dog|cat|"
    r"puppy|kitten|pet|bird|horse|rabbit|hamster|parrot|family|in-laws|mother-in-law|father-in-law|"
    r"sister-in-law|brother-in-law|stepmom|stepmother|stepdad|stepfather|stepson|stepdaughter|"
    r"ex|ex-wife|ex-husband|ex-girlfriend|ex-boyfriend|therapist|doctor|mentor|landlord|classmate|"
    r"teacher|student|students|team|sons|daughters|sisters|brothers|cousins|dogs|cats|pets)"
)
_RELATION_ADJ = (
    r"(?:(?:older|younger|little|big|eldest|oldest|youngest|middle|best|new|twin|baby|step|late|"
    r"ex-|adopted|only|teenage|adult|two|three|lovely|sweet|old)\s*)*"
)
_PARTNERS = frozenset(
    "wife husband partner spouse girlfriend boyfriend fiance fiancee fiancé fiancée".split()
)
_CHILDREN = frozenset("kid kids children child son sons daughter daughters baby babies".split())
_LANGUAGES = (
    r"(?:english|french|spanish|german|italian|portuguese|dutch|japanese|chinese|mandarin|cantonese|"
    r"korean|russian|arabic|hindi|urdu|bengali|polish|swedish|norwegian|danish|finnish|greek|turkish|"
    r"hebrew|ukrainian|czech|slovak|hungarian|romanian|bulgarian|croatian|serbian|vietnamese|thai|"
    r"indonesian|malay|tagalog|filipino|swahili|persian|farsi|catalan|basque|welsh|irish|icelandic|"
    r"latin|esperanto|tamil|telugu|punjabi|gujarati|marathi|estonian|latvian|lithuanian|slovenian)"
)
_DEMONYMS = frozenset(
    """american british english scottish welsh irish canadian mexican brazilian argentinian argentine
    chilean colombian peruvian venezuelan cuban french german italian spanish portuguese dutch belgian
    swiss austrian swedish norwegian danish finnish icelandic polish czech slovak hungarian romanian
    bulgarian greek turkish russian ukrainian serbian croatian bosnian slovenian albanian estonian
    latvian lithuanian chinese japanese korean vietnamese thai filipino indonesian malaysian singaporean
    indian pakistani bangladeshi nepali sri lankan iranian iraqi israeli palestinian lebanese syrian
    jordanian saudi egyptian moroccan algerian tunisian nigerian ghanaian kenyan ethiopian
    south african australian kiwi zealander taiwanese mongolian armenian georgian azerbaijani
    kazakh uzbek afghan jamaican haitian dominican puerto rican ecuadorian bolivian uruguayan
    paraguayan""".split()
)
_JOBS = frozenset(
    """nurse doctor physician surgeon dentist teacher professor lecturer tutor engineer developer
    programmer coder designer architect lawyer attorney solicitor barrister judge paralegal accountant
    auditor banker trader analyst consultant manager director executive ceo cto cfo founder cofounder
    co-founder entrepreneur scientist researcher chemist biologist physicist mathematician economist
    statistician journalist writer author editor reporter photographer artist painter illustrator
    musician singer composer producer actor actress dancer chef cook baker barista bartender waiter
    waitress pilot firefighter police officer cop soldier veteran electrician plumber carpenter mechanic
    technician farmer gardener driver cashier clerk receptionist secretary assistant administrator
    librarian pharmacist therapist psychologist psychiatrist counselor counsellor social worker
    paramedic midwife vet veterinarian student intern apprentice freelancer contractor marketer
    recruiter salesperson realtor agent officer coach trainer instructor translator interpreter
    nanny caregiver carer housewife homemaker pastor priest rabbi imam minister volunteer
    postdoc phd grad undergrad undergraduate sysadmin devops scrum product owner ux ui qa tester
    investor retiree""".split()
)
_JOB_SUFFIX = re.compile(r"(?:er|or|ist|ian|ant|ologist|wright|smith|man|woman|person)$")
_NOT_JOBS = frozenset(
    """mother father parent mom mum dad grandmother grandfather member beginner fan lover user owner
    customer believer follower vegetarian vegan pescatarian christian muslim jew buddhist hindu
    atheist introvert extrovert ambivert person human adult teenager teen woman man girl boy guy
    gamer reader runner swimmer cyclist hiker climber traveler traveller foodie newbie
    learner native citizen resident immigrant expat tourist visitor patient survivor
    perfectionist optimist pessimist night owl early bird morning person lefty""".split()
)
_HOBBY_WORDS = frozenset("gamer reader runner swimmer cyclist hiker climber traveler traveller foodie".split())
_DIET = (
    r"(?:vegetarian|vegan|pescatarian|pescetarian|flexitarian|plant-based|gluten-free|dairy-free|"
    r"lactose-free|lactose intolerant|keto|paleo|kosher|halal|carnivore|on an? (?:\w+\s+){0,2}diet|"
    r"raw vegan|teetotal|sober|a vegetarian|a vegan|a pescatarian)"
)
_FOODS = (
    r"(?:meat|red meat|pork|beef|chicken|fish|seafood|shellfish|dairy|milk|cheese|eggs?|gluten|wheat|"
    r"sugar|carbs|nuts|peanuts|soy|animal products|meat or fish|alcohol|caffeine|coffee|spicy food)"
)
_CONDITIONS = (
    r"(?:diabetes|type \d diabetes|asthma|adhd|add|autism|dyslexia|epilepsy|migraines?|celiac(?: disease)?|"
    r"coeliac(?: disease)?|crohn's(?: disease)?|ibs|arthritis|anxiety|depression|insomnia|high blood pressure|"
    r"hypertension|low blood pressure|a heart condition|cancer|long covid|a bad back|back pain|tinnitus|"
    r"(?:a |an )?(?:\w+ )?allerg(?:y|ies)|(?:an? )?(?:\w+ )?intolerance|a disability|ptsd|ocd|bipolar disorder|"
    r"multiple sclerosis|ms|lupus|endometriosis|pcos|sleep apnea|a pacemaker|hearing loss|"
    r"color blindness|colour blindness)"
)
_HEALTH_ADJ = (
    r"(?:diabetic|asthmatic|pregnant|colou?r-?blind|deaf|blind|epileptic|autistic|dyslexic|celiac|coeliac|"
    r"disabled|hard of hearing|in a wheelchair|immunocompromised|left-handed|right-handed|ambidextrous|"
    r"hypertensive|anemic|anaemic|a type \d diabetic|on medication|in recovery|sober|neurodivergent|"
    r"short-sighted|near-sighted|far-sighted|nearsighted|farsighted)"
)
_ASSISTANT_VERBS = (
    r"(?:answer|reply|respond|write|speak|talk|use|give|show|include|mention|suggest|recommend|send|add|"
    r"ask|call|remind|explain|format|keep|be|make|sign|address|greet|say|list|summari[sz]e|translate|"
    r"avoid|cite|put|start|end|double-check|check|tell|bother|offer|sugarcoat|sugar-coat|correct|"
    r"spell|refer|assume|provide|number|label|quote|round|convert|measure|reference|bring up|"
    r"apologi[sz]e|repeat|respond|return|switch|stick|treat|text|email|contact|notify|schedule|book|"
    r"pronounce|curse|swear|lecture|moralize|hedge|ramble|overexplain|over-explain)"
)
_ASSISTANT_GERUNDS = (
    r"(?:answering|replying|responding|writing|speaking|talking|using|giving|showing|including|"
    r"mentioning|suggesting|recommending|sending|adding|asking|calling|reminding|explaining|"
    r"formatting|saying|listing|apologi[sz]ing|repeating|correcting|lecturing|moralizing|hedging|"
    r"rambling|swearing|cursing|being|putting|starting|ending|bringing up|telling|offering|"
    r"sugarcoating|sugar-coating|over-?explaining|emailing|texting|bothering)"
)


# --------------------------------------------------------------------------------------------
# Rule helpers
# --------------------------------------------------------------------------------------------

_Rule = Callable[[str, int], "Statement | None"]
_RULES: list[_Rule] = []
# The parser recurses once into the body of "remember that ..." / "forget that ...".
_MAX_DEPTH = 1


def _rule(func: _Rule) -> _Rule:
    _RULES.append(func)
    return func


def _re(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


def _topics(*labels: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(labels))


_DEICTIC = _re(
    r"^(?:it|that|this|these|those|them|him|her|you|yours|one|some|any|what you|how you|when you|"
    r"the way you|the idea|your|it when|that you|to think|to believe|to say|to know|so|too|"
    r"it all|all of (?:it|that|this)|everything|nothing|much|more|less|a lot|so much)\b"
)
_TRANSIENT = _re(
    r"^(?:so\s+|really\s+|very\s+|super\s+|a bit\s+|kind of\s+|being\s+)*"
    r"(?:tired|busy|sick|bored|hungry|thirsty|annoyed|annoying|angry|mad|upset|happy|sad|late|here|"
    r"there|home|back|away|out|ready|done|fine|ok|okay|good|great|awake|asleep|sleeping|calling|"
    r"coming|waiting|sure|sorry|confused|lost|stuck|wondering|trying|looking|just|being|about to|"
    r"on (?:the|my) way|in (?:a|the) (?:meeting|car|shower)|right|wrong|correct|glad|excited|"
    r"nervous|worried|scared|afraid|stressed|exhausted|fed up|not sure|curious|interested|ill|"
    r"feeling|running late|free|available|around|online|offline|listening|watching|reading|eating)\b"
)


def _deictic(phrase: str) -> bool:
    """Tell whether a phrase only points at context ("it", "that", "the way you ...")."""
    phrase = phrase.strip(" ,.")
    return not phrase or bool(_DEICTIC.match(phrase))


def _name(raw: str) -> str | None:
    """Return a person's name from the start of ``raw``, title-cased when typed in lower case."""
    raw = re.split(r"\s*(?:,|\bfrom now on\b|\binstead\b|\bplease\b|\bgoing forward\b|\bfor short\b|\bby the way\b|"
                   r"\bthough\b|\bnot\b|\bbut\b|\band\b)", raw.strip(" \"'"), maxsplit=1)[0]
    words = [w.strip("\"'!") for w in raw.split()]
    if not words or len(words) > 3 or _deictic(raw) or not all(re.fullmatch(r"[^\W\d_][\w'.-]*", w) for w in words):
        return None
    if all(w.islower() for w in words):
        words = [w[:1].upper() + w[1:] for w in words]
    return " ".join(words)


_CATEGORIES: tuple[tuple[re.Pattern[str], str], ...] = (
    (_re(r"\b(?:dark|light|night)\s+(?:mode|theme)s?\b|\b(?:dark|light)\s+(?:background|ui|interface)s?\b"),
     "preference:ui mode"),
    (_re(r"\b(?:celsius|fahrenheit|centigrade)\b"), "preference:temperature unit"),
    (_re(r"\b(?:metric|imperial)\b|\b(?:kilomet(?:er|re)s|miles|kilos|pounds)\b"), "preference:units"),
    (_re(r"\b(?:window|aisle|middle)\s+seats?\b"), "preference:seat"),
    (_re(r"\b(?:iphone|android phone|an android|pixel|galaxy phone)\b"), "preference:phone"),
    (_re(r"\b(?:a mac|macos|mac os|windows|linux|ubuntu|debian|fedora|arch linux|chromeos)\b"),
     "preference:operating system"),
    (_re(r"\b(?:vim|neovim|emacs|vs ?code|visual studio code|intellij|pycharm|sublime text|cursor)\b"),
     "preference:code editor"),
    (_re(r"\b(?:chrome|firefox|safari|brave|edge browser|opera browser)\b"), "preference:browser"),
    (_re(r"\b(?:tabs|spaces)\s+(?:over|for|to)\s+(?:tabs|spaces)|\bindent(?:ing|ation)? with (?:tabs|spaces)\b"),
     "preference:indentation"),
    (_re(rf"\b{_DIET}\b"), "personal:diet"),
)


def _category(text: str) -> str | None:
    """Return the subject of a well-known preference slot mentioned in ``text``."""
    for pattern, subject in _CATEGORIES:
        if pattern.search(text):
            return subject
    return None


_PREPOSITION_CUT = _re(
    r"\s+(?:in|on|at|with|for|during|when|because|but|and|especially|since|while|from|after|before|as|"
    r"than|more|a lot|so much|very much|too|every|whenever|if|though|although|or)\b"
)


def _object_key(phrase: str) -> str:
    """Return the key of a liked or disliked thing ("hiking in the mountains" -> "hiking")."""
    head = _PREPOSITION_CUT.split(phrase.strip(), maxsplit=1)[0]
    return _key(head) or _key(phrase)


_ATTRIBUTES: dict[str, str] = {
    "name": "personal:name", "first name": "personal:name", "given name": "personal:name",
    "full name": "personal:full name", "last name": "personal:last name", "surname": "personal:last name",
    "family name": "personal:last name", "middle name": "personal:middle name",
    "nickname": "personal:nickname", "birthday": "personal:birthday", "bday": "personal:birthday",
    "b-day": "personal:birthday", "date of birth": "personal:birthday", "birth date": "personal:birthday",
    "dob": "personal:birthday", "age": "personal:age", "email": "personal:email",
    "email address": "personal:email", "e-mail": "personal:email", "e-mail address": "personal:email",
    "phone": "personal:phone", "phone number": "personal:phone", "number": "personal:phone",
    "cell": "personal:phone", "cell number": "personal:phone", "mobile": "personal:phone",
    "mobile number": "personal:phone", "address": "personal:address", "home address": "personal:address",
    "postcode": "personal:address", "zip code": "personal:address", "zip": "personal:address",
    "job": "personal:job", "job title": "personal:job", "role": "personal:job", "position": "personal:job",
    "profession": "personal:job", "occupation": "personal:job", "title": "personal:job",
    "employer": "personal:employer", "company": "personal:employer", "workplace": "personal:employer",
    "hometown": "personal:origin", "home town": "personal:origin", "city": "personal:location",
    "country": "personal:location", "town": "personal:location", "nationality": "personal:nationality",
    "citizenship": "personal:nationality", "native language": "personal:native language",
    "first language": "personal:native language", "mother tongue": "personal:native language",
    "religion": "personal:religion", "faith": "personal:religion", "blood type": "personal:blood type",
    "blood group": "personal:blood type", "zodiac sign": "personal:zodiac sign",
    "star sign": "personal:zodiac sign", "sign": "personal:zodiac sign", "height": "personal:height",
    "weight": "personal:weight", "pronouns": "personal:pronouns", "gender": "personal:gender",
    "shoe size": "personal:shoe size", "major": "personal:education", "degree": "personal:education",
    "field of study": "personal:education", "school": "personal:education",
    "university": "personal:education", "college": "personal:education", "timezone": "personal:time zone",
    "time zone": "personal:time zone", "username": "personal:username", "user name": "personal:username",
    "handle": "personal:username", "github": "personal:username", "website": "personal:website",
    "anniversary": "personal:anniversary", "wedding anniversary": "personal:anniversary",
    "goal": "personal:goal", "main goal": "personal:goal", "dream": "personal:goal",
    "ambition": "personal:goal", "diet": "personal:diet", "budget": "preference:budget",
    "salary": "personal:salary", "marital status": "personal:relationship status",
    "relationship status": "personal:relationship status", "hobby": "personal:hobbies",
    "hobbies": "personal:hobbies", "native tongue": "personal:native language",
    "home": "personal:location", "base": "personal:location", "house": "personal:location",
}
_ATTRIBUTE_ALT = "|".join(sorted((re.escape(a) for a in _ATTRIBUTES), key=len, reverse=True))
_DATE_ATTRIBUTES = frozenset({"personal:birthday", "personal:anniversary"})
_ATTRIBUTE_START = _re(rf"^(?:my|our)\s+(?P<attr>{_ATTRIBUTE_ALT})\b")
_ABOUT = (
    (_re(r"\bwhere i (?:live|am based|stay)\b|\bmy (?:home|location)\b"), "personal:location"),
    (_re(r"\bwhere i work\b|\bmy (?:employer|workplace)\b"), "personal:employer"),
    (_re(r"\bwhat i do for (?:a living|work)\b"), "personal:job"),
    (_re(r"\bwhere i(?:'m| am) from\b"), "personal:origin"),
    (_re(r"\bhow old i am\b"), "personal:age"),
    (_re(r"\bwhat (?:to call me|my name is)\b"), "personal:name"),
)


def _attribute_subject(text: str) -> str | None:
    """Return the slot a loose phrase refers to ("my address" -> "personal:address")."""
    found = _ATTRIBUTE_START.match(text.strip())
    if found:
        return _ATTRIBUTES[found.group("attr").lower()]
    for pattern, subject in _ABOUT:
        if pattern.search(text):
            return subject
    return _category(text)


# --------------------------------------------------------------------------------------------
# Rules: requests to forget or remember, and standing instructions
# --------------------------------------------------------------------------------------------

_FORGET = _re(
    r"^(?:please\s+|can you\s+|you can\s+|you should\s+|just\s+|also\s+)*"
    r"(?:forget|disregard|erase|delete|remove|unlearn|stop remembering|don't remember|do not remember|"
    r"no need to remember|you don't need to remember|don't keep|do not keep)\s+"
    r"(?:about\s+)?(?:the fact\s+|the part\s+)?(?:that\s+|what i (?:said|told you|mentioned) about\s+|how\s+)?"
    r"(?P<body>.+)$"
)
_FORGET_NOTHING = _re(
    r"^(?:it|that|this|everything|all that|it all|about it|me|all of it|all of this|the rest|"
    r"what i (?:just )?said|everything i (?:just )?said|about that|to \w+)$|^to\s"
)


@_rule
def _forget(text: str, depth: int) -> Statement | None:
    found = _FORGET.match(text)
    if found is None:
        return None
    body = found.group("body").strip()
    if _FORGET_NOTHING.match(body):
        return None
    inner = _parse_clause(body, depth + 1) if depth < _MAX_DEPTH else None
    if inner is not None and inner.fact:
        return Statement(inner.fact, _topics(*inner.topics, INSTRUCTIONS), inner.subject, is_retraction=True)
    if not re.match(r"^(?:my|i|i'm|i've|we|our|where|what|how)\b", body, re.IGNORECASE):
        return None
    return Statement(
        _finish(body), (INSTRUCTIONS, PERSONAL, PREFS, DETAILS), _attribute_subject(body), is_retraction=True
    )


_REMEMBER = _re(
    r"^(?:please\s+|also\s+|just\s+|and\s+|always\s+)*"
    r"(?:remember|don't forget|do not forget|never forget|keep in mind|bear in mind|note|make a note|"
    r"take note|make sure (?:you|to) remember|for future reference|for your (?:information|records)|"
    r"save|store|memori[sz]e)\b(?:\s+(?:this|that|of this|of that|for later|for the future))?"
    r"(?:\s*:\s*|\s+that\s+|\s*,\s*|\s+)(?P<body>.+)$"
)


@_rule
def _remember(text: str, depth: int) -> Statement | None:
    found = _REMEMBER.match(text)
    if found is None or depth >= _MAX_DEPTH:
        return None
    body = found.group("body").strip()
    if _deictic(body) or body.lower() in {"me", "this", "that"} or len(body.split()) < 2:
        return None
    if body.lower().startswith("to "):
        # "remember to always answer in French" is an instruction; "remember to remind me ..." a task.
        instruction = _parse_clause(body[3:], depth + 1)
        if instruction is not None and INSTRUCTIONS in instruction.topics:
            return instruction
        return Statement(_finish(f"Remember {body}"), (INSTRUCTIONS, DETAILS))
    inner = _parse_clause(body, depth + 1)
    if inner is not None and inner.fact:
        return replace(inner, topics=_topics(INSTRUCTIONS, *inner.topics))
    if not re.match(r"^(?:my|i|i'm|i've|i'll|we|we're|our)\b", body, re.IGNORECASE):
        return None
    return Statement(_finish(body), (INSTRUCTIONS, PERSONAL, DETAILS), _attribute_subject(body))


_CALL_ME = _re(
    r"^(?:please\s+|you can\s+|you may\s+|just\s+|feel free to\s+|i'd like you to\s+|i would like you to\s+|"
    r"i want you to\s+|always\s+|you should\s+|do\s+)*(?:call me|address me as|refer to me as)\s+(?P<name>.+)$"
)
_GO_BY = _re(
    r"^(?:i|we)\s+(?:(?:usually|mostly|normally|now|also|really|just)\s+)*"
    r"(?:go by|prefer to be (?:called|addressed as)|'d prefer to be (?:called|addressed as)|"
    r"would prefer to be (?:called|addressed as)|like to be called|'d like to be called|would like to be called|"
    r"want to be (?:called|addressed as))\s+(?P<name>.+)$"
)
_DONT_CALL_ME = _re(
    r"^(?:please\s+)?(?:don't|do not|never|stop|quit)\s+(?:ever\s+)?call(?:ing)?\s+me\s+(?P<name>.+)$"
)


@_rule
def _call_me(text: str, depth: int) -> Statement | None:
    found = _CALL_ME.match(text) or _GO_BY.match(text)
    if found is not None:
        name = _name(found.group("name"))
        if name is None:
            return None
        return Statement(f"I want to be called {name}.", (INSTRUCTIONS, PERSONAL), "instruction:name")
    found = _DONT_CALL_ME.match(text)
    if found is not None:
        name = _name(found.group("name"))
        # No subject: "don't call me Bob" must not replace "call me Robert".
        return Statement(f"Don't call me {name}.", (INSTRUCTIONS, PREFS)) if name else None
    return None


_STANDING_LEAD = _re(
    r"^(?:from now on|going forward|moving forward|in the future|in future|henceforth|from here on(?: out)?|"
    r"from today(?: on(?:wards)?)?|for all future (?:answers|responses|replies|chats|conversations)|"
    r"every time|whenever we (?:talk|chat)|in every (?:answer|response|reply)|by default|"
    r"for (?:all )?(?:our )?future (?:chats|conversations))\b[\s,:]*(?P<body>.+)$"
)
_STANDING_TAIL = _re(
    r"^(?P<body>.+?)[\s,]+(?:from now on|going forward|moving forward|in the future|in future|by default|"
    r"every time|at all times|all the time|always|each time|in every (?:answer|response|reply))$"
)
_DIRECTED = _re(
    r"^(?:please\s+|kindly\s+|you should\s+|you must\s+|you need to\s+|you have to\s+|"
    r"make sure (?:that\s+)?(?:you\s+|to\s+)?|i want you to\s+|i'd like you to\s+|i would like you to\s+|"
    r"i need you to\s+|i prefer (?:that\s+|it if\s+|it when\s+|if\s+)?you\s+|i'd prefer (?:it\s+)?if you\s+|"
    r"i would prefer (?:it\s+)?if you\s+|i'd appreciate (?:it\s+)?if you\s+|i like it when you\s+|"
    r"try to\s+|remember to\s+|be sure to\s+)+(?P<body>.+)$"
)
_IMPERATIVE = _re(
    rf"^(?P<lead>(?:always|never|don't|do not|dont|stop|quit|avoid|no more|please)\s+)*"
    rf"(?P<verb>{_ASSISTANT_VERBS}|{_ASSISTANT_GERUNDS})\b(?P<rest>.*)$"
)
_STYLE = _re(
    rf"\b(?:in\s+(?:plain\s+|simple\s+|british\s+|american\s+|brazilian\s+)?{_LANGUAGES}|{_LANGUAGES}\b|metric|imperial|"
    r"celsius|fahrenheit|kilomet(?:er|re)s|miles|bullet(?:\s+points)?|markdown|tables?|plain text|"
    r"numbered lists?|code blocks?|json|short|shorter|brief|briefly|concise|concisely|succinct|"
    r"detailed|in detail|long|longer|verbose|one (?:sentence|paragraph|line)|formal|informal|casual|"
    r"friendly|professional|polite|emojis?|emoticons|jargon|simple (?:words|language|terms)|step by step|"
    r"examples?|sources|citations|first name|my name|24-hour|12-hour|date format|time zone|timezone|"
    r"headings|headers|summary|summaries|tl;?dr|apologi[sz]e|apologi[sz]ing|disclaimers?|caveats?|"
    r"exclamation|capital letters|caps|oxford comma|american spelling|british spelling|sign off|"
    r"swear|swearing|curse|cursing|profanity|tone|voice|straight to the point|to the point|directly|"
    r"honest|blunt|gently|small talk|follow-up questions|questions at the end|options|like an? (?:friend|teacher|"
    r"coach|expert|colleague|peer|five-year-old|child|beginner)|like i'm (?:five|5|a beginner))\b"
)
_INSTRUCTION_SLOTS: tuple[tuple[re.Pattern[str], str], ...] = (
    (_re(rf"\b{_LANGUAGES}\b"), "instruction:language"),
    (_re(r"\b(?:metric|imperial|celsius|fahrenheit|kilomet(?:er|re)s|miles|units?)\b"), "instruction:units"),
    (_re(r"\bemojis?|emoticons\b"), "instruction:emoji"),
    (_re(r"\b(?:bullet(?:\s+points)?|markdown|tables?|plain text|numbered lists?|code blocks?|json|headings|"
         r"headers)\b"), "instruction:format"),
    (_re(r"\b(?:short|shorter|brief|briefly|concise|concisely|succinct|detailed|in detail|long|longer|verbose|"
         r"one (?:sentence|paragraph|line)|length|straight to the point|to the point|tl;?dr)\b"),
     "instruction:length"),
    (_re(r"\b(?:formal|informal|casual|friendly|professional|polite|tone|blunt|gently|like an? \w+)\b"),
     "instruction:tone"),
)


def _instruction_subject(text: str) -> str | None:
    for pattern, subject in _INSTRUCTION_SLOTS:
        if pattern.search(text):
            return subject
    return None


def _instruction(body: str, *, standing: bool) -> Statement | None:
    """Return a standing instruction from an imperative, or None for a one-off request."""
    body = re.sub(r"^(?:please|kindly)\s+|\s+please$", "", body.strip(), flags=re.IGNORECASE).strip()
    found = _IMPERATIVE.match(body)
    if found is None:
        return None
    lead = (found.group("lead") or "").lower()
    rest = found.group("rest").strip()
    negative = any(w in lead for w in ("never", "don't", "do not", "dont", "stop", "quit", "avoid", "no more"))
    explicit = "always" in lead or negative
    styled = bool(_STYLE.search(body))
    if rest and _deictic(rest) and not styled:
        return None
    if not (standing or explicit or styled):
        return None  # "please summarize this" is a request for now, not a rule for later
    if not rest and not found.group("verb").lower().endswith("ing") and not negative:
        return None
    if not lead.strip() or lead.strip() == "please":
        body = f"always {body[:1].lower()}{body[1:]}"
    return Statement(_finish(body), (INSTRUCTIONS, PREFS), _instruction_subject(body))


# Indirect phrasings of a negative instruction, reworded as the imperative they mean.
_REWORDED = (
    (_re(r"^(?:i'd|i would)\s+rather\s+you\s+(?:didn't|did not|not|never)\s+"), "don't "),
    (_re(r"^(?:there's\s+|there is\s+)?no need to\s+|^you\s+(?:don't|do not)\s+(?:need|have)\s+to\s+"), "don't "),
    (_re(r"^(?:please\s+)?refrain from\s+"), "stop "),
)


@_rule
def _standing(text: str, depth: int) -> Statement | None:
    standing = False
    for pattern in (_STANDING_LEAD, _STANDING_TAIL):
        found = pattern.match(text)
        if found is not None:
            standing, text = True, found.group("body").strip()
            break
    if standing and depth < _MAX_DEPTH and re.match(r"^(?:i|i'm|i've|my|we|we're)\b", text, re.IGNORECASE):
        # "From now on I'm vegetarian" is a change of fact, not an instruction.
        return _parse_clause(text, depth + 1)
    for pattern, replacement in _REWORDED:
        text = pattern.sub(replacement, text, count=1)
    directed = _DIRECTED.match(text)
    if directed is not None:
        text = directed.group("body").strip()
    if not (standing or directed is not None or _IMPERATIVE.match(text)):
        return None
    return _instruction(text, standing=standing)


# --------------------------------------------------------------------------------------------
# Rules: personal information
# --------------------------------------------------------------------------------------------

_I_AM = r"(?:i|we)(?:'m|'re|\s+am|\s+are)"
_ADVERBS = r"(?:(?:now|currently|still|also|actually|really|both|happily|newly|recently|officially|finally|just)\s+)*"

_MY_NAME = _re(
    r"^(?:my|the)\s+(?P<which>(?:first|given|full|last|middle|family|real|legal)\s+)?name(?:'s|\s+is)\s+(?P<name>.+)$"
    r"|^(?:i|i'm|i am)\s+(?:called|named)\s+(?P<name2>.+)$"
)
_IM_NAME = re.compile(
    r"^(?:I'm|I am|i'm|i am|im)\s+(?P<name>[A-Z][\w'-]+(?:\s+[A-Z][\w'-]+)?)"
    r"(?:\s*,?\s+(?:from|here|by the way|btw|nice to meet you)\b.*)?$"
)
_NOT_NAMES = frozenset(
    """ok okay fine good great sorry back here done ready new in on at going not so just also a an the
    sure glad happy excited afraid still currently now from really very tired busy home out there
    vegan vegetarian single married engaged divorced retired pregnant allergic learning working
    living moving interested into gonna trying looking thinking""".split()
)


@_rule
def _my_name(text: str, depth: int) -> Statement | None:
    found = _MY_NAME.match(text)
    if found is not None:
        name = _name(found.group("name") or found.group("name2"))
        if name is None:
            return None
        which = (found.group("which") or "").strip().lower()
        slot = {"last": "last name", "family": "last name", "middle": "middle name", "full": "full name"}
        if which in slot:
            return Statement(f"My {which} name is {name}.", (PERSONAL,), f"personal:{slot[which]}")
        return Statement(f"My name is {name}.", (PERSONAL,), "personal:name")
    found = _IM_NAME.match(text)
    if found is not None:
        name = found.group("name")
        words = name.lower().split()
        if words[0] in _NOT_NAMES or words[0] in _DEMONYMS or name.lower() in _DEMONYMS:
            return None
        return Statement(f"My name is {name}.", (PERSONAL,), "personal:name")
    return None


_REPORTED = _re(
    rf"^my\s+{_RELATION_ADJ}(?P<rel>{_RELATIONS})(?:\s+(?P<name>(?-i:[A-Z][\w'-]+)))?\s+"
    r"(?:says|said|told me|tells me|thinks|mentioned|keeps saying|claims|swears|texted me|wrote)\s+"
    r"(?:that\s+)?(?P<pron>she|he|they)(?P<rest>'s\s+.+|'re\s+.+|\s+.+)$"
)


@_rule
def _reported(text: str, depth: int) -> Statement | None:
    """Keep what a relative or friend says about themselves, at lower confidence (see the docs)."""
    found = _REPORTED.match(text)
    if found is None:
        return None
    head = text[: found.start("pron")]
    head = re.sub(
        r"\s+(?:says|said|told me|tells me|thinks|mentioned|keeps saying|claims|swears|texted me|wrote)"
        r"\s+(?:that\s+)?$", "", head, flags=re.IGNORECASE,
    )
    rest = found.group("rest")
    rest = re.sub(r"^'s\s+", " is ", rest)
    rest = re.sub(r"^'re\s+", " are ", rest)
    fact = _finish(f"{head}{rest}")
    topics = (PERSONAL, DETAILS) if _TIME.search(rest) else (PERSONAL,)
    return Statement(fact, topics, confidence=HEDGED)


_FAVOURITE = _re(
    r"^(?:my|our)\s+(?:(?:absolute|all[\s-]time|current|new|personal|top|very|most)\s+)*"
    r"(?P<fav>favou?rite|fave|fav|preferred)\s+(?P<cat>[\w' -]+?)"
    r"(?P<verb>\s+(?:is|are|has to be|would be|was|remains|has always been|is still|at the moment is)|'s)\s+"
    r"(?P<val>.+)$"
)
_FAVOURITE_AFTER = _re(
    r"^(?P<val>.+?)\s+(?:is|are|'s|remains)\s+(?:definitely\s+|probably\s+|still\s+|totally\s+|now\s+)?"
    r"(?:my|our)\s+(?:(?:absolute|all[\s-]time|new|personal|top|very)\s+)*(?:favou?rite|fave|fav)"
    r"(?:\s+(?P<cat>[\w' -]+))?$"
)


@_rule
def _favourite(text: str, depth: int) -> Statement | None:
    found = _FAVOURITE.match(text)
    if found is not None:
        if _deictic(found.group("val")):
            return None
        category = found.group("cat")
        if found.group("verb") == "'s":  # "my favourite colour's blue"
            text = f"{text[: found.start('verb')]} is {found.group('val')}"
        fact = _finish(text)
        if found.group("fav").lower() == "preferred" and _key(category) == "language":
            return Statement(fact, (PREFS, INSTRUCTIONS), "instruction:language")
        return Statement(fact, (PREFS,), f"preference:{_key(category)}")
    found = _FAVOURITE_AFTER.match(text)
    if found is not None and not _deictic(found.group("val")) and len(found.group("val").split()) <= 6:
        category = found.group("cat")
        return Statement(_finish(text), (PREFS,), f"preference:{_key(category or found.group('val'))}")
    return None


_DIET_RULES = (
    _re(rf"^{_I_AM}\s+{_ADVERBS}(?:not\s+|no longer\s+)?(?:(?:strictly|fully|mostly|mainly|completely|"
        rf"totally|a\s+strict|an?\s+)\s*)*{_DIET}\b"),
    _re(rf"^(?:i|we)\s+{_ADVERBS}(?:don't|do not|no longer|never|can't|cannot|stopped|quit|gave up|try not to|"
        rf"avoid|cut out)\s+(?:eating\s+|eat\s+|drinking\s+|drink\s+|having\s+)?(?:any\s+)?{_FOODS}\b"),
    _re(rf"^(?:i|we)\s+{_ADVERBS}(?:eat|follow|keep|went|became|switched to|am on|'m on|started)\s+"
        rf"(?:a\s+|an\s+|only\s+|mostly\s+)?(?:strictly\s+)?{_DIET}\b"),
    _re(r"^(?:i|we)\s+(?:only\s+)?eat\s+(?:only\s+)?(?:plant-based|vegetarian|vegan|halal|kosher|organic|fish)"),
)


@_rule
def _diet(text: str, depth: int) -> Statement | None:
    for pattern in _DIET_RULES:
        if pattern.match(text):
            food = re.search(rf"\b{_FOODS}\b", text, re.IGNORECASE)
            subject = "personal:diet"
            if food and not re.search(r"\b(?:meat|animal products)\b", food.group(0), re.IGNORECASE) \
                    and not re.search(rf"\b{_DIET}\b", text, re.IGNORECASE):
                subject = f"personal:diet {_key(food.group(0))}"
            return Statement(_finish(text), (PERSONAL, PREFS), subject)
    return None


_ALLERGY = _re(
    rf"^{_I_AM}\s+{_ADVERBS}(?:not\s+|no longer\s+)?(?:(?:severely|very|mildly|deathly|highly|super|slightly)\s+)?"
    r"(?:allergic|intolerant|sensitive|hypersensitive)\s+to\s+(?P<x>.+)$"
    r"|^(?:i|we)\s+(?:have|'ve got|have got|got)\s+(?:an?\s+|severe\s+|a\s+severe\s+)?(?P<y>[\w-]+(?:\s+[\w-]+)?)\s+"
    r"(?:allergy|allergies|intolerance)\b"
)
_CONDITION = _re(
    rf"^(?:i|we)\s+{_ADVERBS}(?:have|'ve got|have got|suffer from|live with|was diagnosed with|"
    rf"got diagnosed with|struggle with|deal with)\s+(?:a\s+|an\s+|mild\s+|severe\s+|chronic\s+)?{_CONDITIONS}\b"
    rf"|^{_I_AM}\s+{_ADVERBS}(?:not\s+)?{_HEALTH_ADJ}\b"
    r"|^(?:i|we)\s+(?:can't|cannot|can not)\s+(?:eat|have|drink|tolerate|digest)\s+(?P<z>.+)$"
)


@_rule
def _health(text: str, depth: int) -> Statement | None:
    found = _ALLERGY.match(text)
    if found is not None:
        thing = found.group("x") or found.group("y") or ""
        return Statement(_finish(text), (PERSONAL,), f"personal:allergy {_object_key(thing)}".strip())
    found = _CONDITION.match(text)
    if found is not None:
        if found.group("z"):
            if _deictic(found.group("z")):
                return None
            return Statement(_finish(text), (PERSONAL, PREFS), f"personal:intolerance {_object_key(found.group('z'))}")
        topics = (PERSONAL, DETAILS) if re.search(r"\b(?:pregnant|diagnosed)\b", text, re.I) else (PERSONAL,)
        return Statement(_finish(text), topics)
    return None


_RELATIONSHIP = _re(
    rf"^{_I_AM}\s+{_ADVERBS}(?:not\s+)?(?:married|single|engaged|divorced|separated|widowed|taken|"
    r"in a (?:\w+\s+)?relationship|dating (?:someone|\w+)|seeing someone|a widow(?:er)?)\b"
    r"|^(?:i|we)\s+(?:just\s+|recently\s+|finally\s+|officially\s+)?(?:got|have been|'ve been)\s+"
    r"(?:married|engaged|divorced|separated|dumped)\b"
    r"|^(?:i|we)\s+(?:just\s+|recently\s+|finally\s+)?broke up\b"
    r"|^(?:i|we)\s+(?:just\s+)?(?:married|divorced)\s+\S"
)


@_rule
def _relationship(text: str, depth: int) -> Statement | None:
    if _RELATIONSHIP.match(text) is None:
        return None
    changed = re.search(r"\b(?:got|broke up|married|divorced|separated)\b", text, re.IGNORECASE) and \
        not re.match(rf"^{_I_AM}\s", text, re.IGNORECASE)
    topics = (PERSONAL, DETAILS) if changed or _TIME.search(text) else (PERSONAL,)
    return Statement(_finish(text), topics, "personal:relationship status")


_AGE = _re(
    rf"^{_I_AM}\s+(?:now\s+|just\s+|almost\s+|nearly\s+|about\s+|over\s+|under\s+)?"
    r"(?:\d{1,3}(?:\s*(?:years?|yrs?)(?:\s+old)?|\s*(?:yo|y/o|y\.o\.))?|in my (?:early |mid |late )?(?:\d0s|"
    r"twenties|thirties|forties|fifties|sixties|seventies|eighties|nineties|teens))$"
    rf"|^{_I_AM}\s+(?:turning|going to be|gonna be)\s+\d{{1,3}}\b"
    r"|^(?:i|we)\s+(?:just\s+)?turned\s+\d{1,3}\b"
)


@_rule
def _age(text: str, depth: int) -> Statement | None:
    if _AGE.match(text) is None:
        return None
    topics = (PERSONAL, DETAILS) if re.search(r"\b(?:turning|going to be|gonna be)\b", text, re.I) else (PERSONAL,)
    return Statement(_finish(text), topics, "personal:age")


_ORIGIN = _re(
    rf"^{_I_AM}\s+(?:originally\s+|also\s+|actually\s+)*from\s+\S"
    r"|^(?:i|we)\s+(?:originally\s+)?(?:come|hail)\s+(?:originally\s+)?from\s+\S"
    r"|^(?:i|we)\s+grew\s+up\s+(?:in|on|near|outside)\s+\S"
)
_BORN = _re(r"^(?:i|we)\s+was\s+(?:born|raised|born and raised)\s+(?:and raised\s+)?(?P<prep>in|on|at)\s+(?P<x>.+)$")
_NATIONALITY = _re(rf"^{_I_AM}\s+(?:originally\s+|also\s+|half[\s-]+)*(?P<d>[a-z]+(?:\s+[a-z]+)?)"
                   r"(?:\s+and\s+(?:half[\s-]+)?[a-z]+)?(?:\s+by\s+birth)?$")


@_rule
def _origin(text: str, depth: int) -> Statement | None:
    if _ORIGIN.match(text):
        return Statement(_finish(text), (PERSONAL,), "personal:origin")
    found = _BORN.match(text)
    if found is not None:
        value = found.group("x")
        if found.group("prep").lower() == "on" or re.match(rf"^{_MONTH}\b", value, re.IGNORECASE):
            return Statement(_finish(text), (PERSONAL, DETAILS), "personal:birthday")
        if re.match(r"^(?:19|20)\d\d\b", value):
            return Statement(_finish(text), (PERSONAL,), "personal:birth year")
        return Statement(_finish(text), (PERSONAL,), "personal:birthplace")
    found = _NATIONALITY.match(text)
    if found is not None and found.group("d").lower() in _DEMONYMS:
        return Statement(_finish(text), (PERSONAL,), "personal:nationality")
    return None


_LIVE = _re(
    r"^(?:i|we|(?:my|our)\s+[\w\s-]{1,30}?\s+and\s+i)\s+(?:(?:now|currently|still|also|actually|"
    r"both|all|mainly|mostly)\s+)*(?:live|reside)\s+(?:in|at|near|outside(?: of)?|on|just outside|close to|by|"
    r"right next to|next to)\s+\S"
    rf"|^{_I_AM}\s+{_ADVERBS}(?:living|residing|based|located|settled|staying permanently)\s+"
    r"(?:in|at|near|out of|outside|on)\s+\S"
    r"|^(?:i|we)(?:'ve|\s+have)\s+been\s+living\s+in\s+\S"
    r"|^(?:i|we)\s+(?:now\s+|currently\s+|still\s+)?live\s+with\s+.+?\s+in\s+\S"
    r"|^(?:my|our)\s+(?:home|house|apartment|flat|place)\s+is\s+(?:in|near|outside)\s+\S"
    r"|^home\s+is\s+\S"
)
_MOVED = _re(
    r"^(?:i|we)\s+(?:(?:just|recently|finally|officially|also|actually|now)\s+)*"
    r"(?:moved|relocated|emigrated)\s+(?:back\s+|over\s+)?(?:to|into)\s+\S"
)


@_rule
def _location(text: str, depth: int) -> Statement | None:
    if _LIVE.match(text):
        return Statement(_finish(text), (PERSONAL,), "personal:location")
    if _MOVED.match(text):
        return Statement(_finish(text), (PERSONAL, DETAILS), "personal:location")
    if re.match(r"^(?:i|we)\s+(?:(?:used to live|lived)\s+in|(?:still\s+)?live\s+(?:with|alone|by myself|on my own))\b",
                text, re.IGNORECASE):
        return Statement(_finish(text), (PERSONAL,))
    return None


_WORK = _re(r"^(?:i|we)(?:\s+(?:currently|now|still|also|mainly|mostly|actually|only))*\s+work\s+(?P<rest>.+)$")
_WORKING = _re(
    rf"^{_I_AM}\s+{_ADVERBS}(?:working|employed|interning|volunteering|teaching|freelancing|a contractor)\s+"
    r"(?P<prep>as|at|for|with|in)\s+(?P<rest>.+)$"
)
_JOB_STATE = _re(
    rf"^{_I_AM}\s+{_ADVERBS}(?:semi-)?(?:retired|unemployed|self-employed|between jobs|out of work|"
    r"on (?:parental|maternity|paternity|sick) leave|job hunting|looking for (?:a\s+)?(?:new\s+)?(?:job|work)|"
    r"a stay-at-home (?:mom|dad|mum|parent)|a full-time (?:mom|dad|mum|parent)|freelancing|a freelancer)\b"
)
_TEACH = _re(r"^(?:i|we)\s+(?:also\s+)?(?:teach|lecture|practi[cs]e (?:law|medicine|dentistry))\s+\S")
_BUSINESS = _re(
    r"^(?:i|we)\s+(?:also\s+)?(?:run|own|founded|co-founded|manage|started|launched)\s+(?:a|an|my own|our own|my|our)"
    r"\s+(?:[\w'-]+\s+){0,3}?(?:business|company|startup|start-up|shop|store|restaurant|cafe|café|bakery|agency|"
    r"firm|practice|studio|clinic|farm|bar|salon|nonprofit|non-profit|charity|brand|label|team|department)\b"
)
_STUDY = _re(
    rf"^{_I_AM}\s+{_ADVERBS}(?:studying|majoring in|doing (?:a|my) (?:phd|masters|master's|degree|bachelor's|"
    r"ba|bsc|ma|msc|mba|doctorate|apprenticeship)|in (?:my|the) (?:first|second|third|fourth|final|last|"
    r"1st|2nd|3rd|4th)[\s-]+year|a (?:first|second|third|fourth|final)[\s-]+year)\b"
    r"|^(?:i|we)\s+(?:also\s+|currently\s+)?(?:study|major in)\s+\S"
    r"|^(?:i|we)\s+(?:go to|attend)\s+(?:[\w'-]+\s+){0,4}?(?:university|college|school|uni|academy|institute)\b"
)
_DEGREE = _re(
    r"^(?:i|we)\s+(?:have|hold|got|earned|completed|finished)\s+(?:a|an|my|two)\s+(?:[\w'-]+\s+){0,2}?"
    r"(?:degree|masters|master's|phd|doctorate|bachelor's|diploma|certificate|mba|ba|bsc|ma|msc)\b"
)


@_rule
def _work(text: str, depth: int) -> Statement | None:
    found = _WORK.match(text) or _WORKING.match(text)
    if found is not None:
        rest = found.group("rest").strip()
        if _deictic(rest) or re.match(r"^(?:on (?:it|that|this)|late|hard|too much|tomorrow|today|tonight)\b", rest,
                                      re.IGNORECASE):
            return None
        if re.match(r"^out\b", rest, re.IGNORECASE):
            return Statement(_finish(text), (PREFS, PERSONAL))  # "I work out every morning": a habit
        prep = (found.groupdict().get("prep") or rest.split()[0]).lower()
        subject = {"as": "personal:job", "at": "personal:employer", "for": "personal:employer"}.get(prep)
        return Statement(_finish(text), (PERSONAL,), subject)
    if _JOB_STATE.match(text) or _TEACH.match(text):
        return Statement(_finish(text), (PERSONAL,), "personal:job")
    if _BUSINESS.match(text):
        return Statement(_finish(text), (PERSONAL, DETAILS) if _TIME.search(text) else (PERSONAL,))
    if _STUDY.match(text):
        return Statement(_finish(text), (PERSONAL,), "personal:education")
    if _DEGREE.match(text):
        return Statement(_finish(text), (PERSONAL, DETAILS) if _TIME.search(text) else (PERSONAL,))
    return None


_EVENTS = (
    r"(?:meeting|appointment|interview|exam|test|flight|call|deadline|date|presentation|surgery|operation|"
    r"check-?up|party|wedding|conference|trip|vacation|holiday|concert|game|match|recital|race|marathon|"
    r"class|lesson|review|demo|launch|performance|shift|ceremony|graduation|reunion|event|session|visit|"
    r"hearing|trial|audition|competition|tournament|dinner|lunch|birthday party|baby shower|funeral|"
    r"move|closing|deployment|release|sprint|retreat|workshop|course|seminar|webinar|show|gig|tour|"
    r"procedure|scan|mri|ultrasound|vaccination|physio|therapy session|exams|finals|midterms)"
)
_HAVE_FAMILY = _re(
    rf"^(?:i|we)\s+(?:also\s+|now\s+|still\s+)?(?:have|'ve got|have got|got)\s+"
    rf"(?P<count>a|an|one|two|three|four|five|six|seven|eight|nine|ten|\d+|no|twin|several|many|a few)?\s*"
    rf"(?:(?:little|younger|older|big|baby|adult|grown-up|grown|teenage|step|half|twin|young|new|beautiful|"
    rf"lovely|wonderful|amazing|rescue|adopted|\w+-year-old)[\s-]+)*(?P<noun>{_RELATIONS})s?\b(?P<rest>.*)$"
)
_DONT_HAVE_FAMILY = _re(
    r"^(?:i|we)\s+(?:don't|do not)\s+have\s+(?:any\s+)?(?P<noun>kids|children|siblings|brothers or sisters|pets)\b"
)
_HAVE_EVENT = _re(
    rf"^(?:i|we)\s+(?:also\s+|still\s+|now\s+)?(?:have|'ve got|have got|got)\s+"
    rf"(?:a|an|my|our|the|two|three|\d+|another|this|some|big|important)\s+(?:[\w'-]+\s+){{0,3}}?"
    rf"(?P<ev>{_EVENTS})s?\b(?P<rest>.*)$"
)


@_rule
def _family(text: str, depth: int) -> Statement | None:
    found = _HAVE_FAMILY.match(text)
    if found is not None:
        noun = found.group("noun").lower()
        count = (found.group("count") or "").lower()
        plural = noun.endswith(("s", "ren")) or noun == "twin"
        if not count and not plural:
            return None  # "I have friend issues"; a countable relative needs a number or an article
        subject = None
        if noun in _PARTNERS:
            subject = "personal:relationship status"
        elif noun in _CHILDREN and (count not in {"a", "an", "one", ""} or plural):
            subject = "personal:children"
        elif noun.startswith("sibling"):
            subject = "personal:siblings"
        return Statement(_finish(text), (PERSONAL,), subject)
    found = _DONT_HAVE_FAMILY.match(text)
    if found is not None:
        noun = found.group("noun").lower()
        subject = {"kids": "personal:children", "children": "personal:children", "pets": None}.get(
            noun, "personal:siblings"
        )
        return Statement(_finish(text), (PERSONAL,), subject)
    return None


@_rule
def _have_event(text: str, depth: int) -> Statement | None:
    found = _HAVE_EVENT.match(text)
    if found is None:
        return None
    return Statement(_finish(text), (DETAILS, PERSONAL))


_RELATION_VERBS = (
    r"(?:is|are|was|were|'s|'re|has|have|had|lives?|lived|works?|worked|just|turned|turns|got|loves?|likes?|"
    r"hates?|enjoys?|studies|studied|plays?|goes|went|can't|cannot|doesn't|don't|does|did|will|started|"
    r"moved|recently|passed|graduated|died|passed away|gets|teaches|runs|owns|speaks|needs|wants|became|"
    r"retired|married|attends|prefers?|lost|won|broke|adopted|also|still|always|never|usually|visits|"
    r"visited|comes|came|stays|called|named)"
)
_RELATION = _re(
    rf"^(?:my|our)\s+{_RELATION_ADJ}(?P<rel>{_RELATIONS})(?:'s?\s+(?P<attr>[\w-]+(?:\s+[\w-]+)?)|"
    rf"(?:\s*,?\s*(?P<name>(?-i:[A-Z][\w'-]+(?:\s+[A-Z][\w'-]+)?))\s*,?)?)\s*"
    rf"(?P<verb>{_RELATION_VERBS})\b(?P<rest>.*)$"
)
@_rule
def _relation(text: str, depth: int) -> Statement | None:
    found = _RELATION.match(text)
    if found is None:
        return None
    rel = found.group("rel").lower()
    attr = (found.group("attr") or "").lower()
    verb = found.group("verb").lower()
    rest = found.group("rest").strip()
    if verb in {"is", "are", "'s", "'re", "was", "were"} and (_TRANSIENT.match(rest) or _deictic(rest)):
        return None
    if not rest and verb not in {"died", "passed away", "retired", "graduated", "married"}:
        return None
    subject = None
    if attr in {"name", "first name", "nickname"} or (
        not attr and verb in {"is", "'s", "are"} and re.match(r"^(?:called|named)\s+\S", rest, re.IGNORECASE)
    ) or (not attr and verb in {"called", "named"}):
        subject = f"personal:{rel} name"
    elif attr in {"birthday", "bday", "anniversary", "age", "job", "email", "phone number", "address"}:
        subject = f"personal:{rel} {attr}"
    elif attr and attr.split()[0] in {"favourite", "favorite"}:
        subject = f"personal:{rel} {attr}"
    birthday = attr in {"birthday", "bday", "anniversary"}
    if birthday:
        topics: tuple[str, ...] = (PERSONAL, DETAILS)
    else:
        topics = (DETAILS, PERSONAL) if _TIME.search(rest) else (PERSONAL,)
    return Statement(_finish(text), topics, subject)


_ATTRIBUTE = _re(
    rf"^(?:my|our)\s+(?P<attr>{_ATTRIBUTE_ALT})(?P<verb>\s+(?:is|are|was|will be|has been)\b|'s|\s*:)\s*(?P<val>.+)$"
)


@_rule
def _attribute(text: str, depth: int) -> Statement | None:
    found = _ATTRIBUTE.match(text)
    if found is None:
        return None
    val = found.group("val").strip()
    attr = found.group("attr")
    subject = _ATTRIBUTES[attr.lower()]
    if _deictic(val) or (_TRANSIENT.match(val) and subject != "personal:name"):
        return None
    if subject == "personal:location" and attr.lower() in {"home", "house", "base"} and \
            not re.match(r"^(?:in|near|outside|at)\b", val, re.IGNORECASE):
        return None
    verb = found.group("verb").strip()
    fact = text if verb not in {"'s", ":"} else f"{text.split(attr, 1)[0]}{attr} is {val}"
    if subject.startswith("preference:"):
        topics: tuple[str, ...] = (PREFS,)
    elif subject in _DATE_ATTRIBUTES:
        topics = (PERSONAL, DETAILS)
    else:
        topics = (PERSONAL,)
    return Statement(_finish(fact), topics, subject)


_SPEAK = _re(rf"^(?:i|we)\s+(?:also\s+|only\s+|mainly\s+|can\s+)?speak\s+(?:\w+\s+){{0,3}}?{_LANGUAGES}\b")
_FLUENT = _re(rf"^{_I_AM}\s+{_ADVERBS}(?:fluent|native|conversational|bilingual|trilingual|a native speaker)\b")
_LEARNING = _re(
    rf"^{_I_AM}\s+{_ADVERBS}(?:learning|teaching myself|taking (?:\w+\s+)?(?:lessons|classes|a course))\s+"
    r"(?:how\s+)?(?:to\s+)?(?P<what>.+)$"
    r"|^(?:i|we)(?:'ve|\s+have)\s+been\s+(?:learning|taking)\s+(?P<what2>.+)$"
)


@_rule
def _languages(text: str, depth: int) -> Statement | None:
    if _SPEAK.match(text) or _FLUENT.match(text):
        return Statement(_finish(text), (PERSONAL,))
    found = _LEARNING.match(text)
    if found is not None:
        what = found.group("what") or found.group("what2") or ""
        if _deictic(what) or re.match(r"^(?:a lot|so much|more|from|about it|the hard way|fast)\b", what, re.I):
            return None
        return Statement(_finish(text), (PERSONAL, DETAILS, PREFS))
    return None


_PLAY = _re(
    r"^(?:i|we)\s+(?:also\s+|really\s+|still\s+|regularly\s+|sometimes\s+|occasionally\s+)?"
    r"(?:play|practi[cs]e)\s+(?P<x>.+)$"
)
_DO_HOBBY = _re(
    r"^(?:i|we)\s+(?:also\s+|regularly\s+|still\s+)?do\s+(?:a lot of\s+|some\s+)?"
    r"(?:yoga|pilates|crossfit|karate|judo|taekwondo|jiu-jitsu|bjj|boxing|kickboxing|ballet|tai chi|meditation|"
    r"triathlons?|marathons?|ironmans?|martial arts|photography|pottery|woodworking|gardening|knitting|"
    r"embroidery|calligraphy|improv|stand-up|standup|volunteer work|charity work|rock climbing|bouldering|"
    r"parkour|archery|fencing|rowing|weightlifting|powerlifting|calisthenics|spinning|zumba|salsa|"
    r"ballroom dancing|cosplay|origami|astronomy|genealogy|birdwatching)\b"
)
_GO_HOBBY = _re(
    r"^(?:i|we)\s+(?:also\s+|regularly\s+|often\s+|still\s+)?go\s+(?:running|hiking|swimming|climbing|cycling|"
    r"biking|skiing|snowboarding|surfing|fishing|hunting|camping|dancing|bouldering|jogging|skating|sailing|"
    r"kayaking|diving|scuba diving|birdwatching|bowling|horse riding|riding|to (?:the\s+)?(?:gym|church|mosque|"
    r"synagogue|temple|yoga|pilates|therapy|choir|dance class|the gym|mass))\b"
)
_HOBBY_LINE = _re(
    r"^(?:my\s+hobb(?:y|ies)\s+(?:is|are|include|includes)|in my (?:free|spare) time,?\s+i|"
    r"(?:i|we)\s+(?:collect|knit|crochet|paint|draw|bake|sew|surf|ski|climb|meditate|fish|volunteer|blog|"
    r"podcast|stream|write (?:poetry|poems|songs|music|novels|fiction|short stories|a blog)|"
    r"run (?:marathons|ultras|half marathons|every)|swim (?:every|laps|competitively)|cook (?:a lot|for fun|"
    r"every)|garden|brew (?:my own|beer)|dance|sing (?:in|every))\b)"
)
_LONG_TIME = _re(
    r"^(?:i|we)(?:'ve|\s+have)\s+been\s+(?P<ing>\w+ing)\b.*\bfor\s+(?:\d+|a|an|over|about|almost|nearly|"
    r"the (?:past|last)|many|several|a few|ten|two|three|four|five|six|seven|eight|nine|twenty|years|decades|"
    r"most of my life|my whole life|ages)\b"
    r"|^(?:i|we)(?:'ve|\s+have)\s+been\s+\w+ing\b.*\bsince\s+(?:i was|(?:19|20)\d\d|childhood|college|school)\b"
)


@_rule
def _hobby(text: str, depth: int) -> Statement | None:
    found = _PLAY.match(text)
    if found is not None:
        x = found.group("x")
        if _deictic(x) or re.match(r"^(?:with|around|along|games with|it safe|a role|a part|a lot of roles|"
                                   r"on|nice|dumb|fair|hard to get|along with)\b", x, re.IGNORECASE):
            return None
        return Statement(_finish(text), (PERSONAL, PREFS))
    if _DO_HOBBY.match(text) or _GO_HOBBY.match(text) or _HOBBY_LINE.match(text):
        return Statement(_finish(text), (PERSONAL, PREFS))
    if _LONG_TIME.match(text):
        return Statement(_finish(text), (PERSONAL,))
    return None


_OWN = _re(
    r"^(?:i|we)\s+(?:also\s+|now\s+|still\s+)?(?:drive|own|ride|have)\s+(?:a|an|two|three|\d+|an old|a new|an? used)"
    r"\s+(?:[\w'-]+\s+){0,3}?(?:car|truck|van|suv|bike|bicycle|motorcycle|motorbike|scooter|tesla|toyota|honda|bmw|"
    r"audi|volkswagen|vw|ford|prius|house|home|apartment|flat|condo|cabin|boat|farm|garden|piano|guitar|"
    r"3d printer|telescope|camera|drone|mac|macbook|pc|iphone|android|kindle|ipad|tablet|laptop)\b"
)
_USE = _re(r"^(?:i|we)\s+(?:mainly\s+|mostly\s+|usually\s+|always\s+|also\s+|only\s+|now\s+|still\s+)?"
           r"(?:use|code in|program in|write in|work with|develop in|develop with)\s+(?P<x>.+)$")


@_rule
def _own_use(text: str, depth: int) -> Statement | None:
    if _OWN.match(text):
        return Statement(_finish(text), (PERSONAL,), _category(text))
    found = _USE.match(text)
    if found is None:
        return None
    x = found.group("x").strip()
    if _deictic(x) or len(x.split()) > 8 or re.match(r"^(?:the (?:bathroom|toilet|restroom)|your|to)\b", x, re.I):
        return None
    parts = re.split(r"\s+for\s+", x, maxsplit=1, flags=re.IGNORECASE)
    subject = _category(x)
    if subject is None and len(parts) == 2 and not _deictic(parts[1]):
        subject = f"preference:{_object_key(parts[1])}"
    return Statement(_finish(text), (PREFS, PERSONAL), subject)


# --------------------------------------------------------------------------------------------
# Rules: preferences and changes
# --------------------------------------------------------------------------------------------

_PREF_ADVERBS = (
    r"(?:(?:really|absolutely|totally|truly|genuinely|do|also|still|just|quite|especially|simply|seriously|"
    r"definitely|actually|secretly|now|particularly|much|generally|usually|strongly|always|mostly|"
    r"personally|both|all|already|honestly)\s+)*"
)
_PREFER = _re(rf"^(?:i|we)(?:\s+|'d\s+|\s+would\s+){_PREF_ADVERBS}(?:prefer|favou?r)\s+(?P<x>.+)$")
_COMPARE = _re(r"\s+(?:over|to|rather than|instead of|vs\.?|versus|more than|than)\s+")
_FOR = _re(r"\s+(?:for|when|while|during)\s+")


@_rule
def _prefer(text: str, depth: int) -> Statement | None:
    found = _PREFER.match(text)
    if found is None:
        return None
    x = found.group("x").strip()
    if _deictic(x) or re.match(r"^(?:not to|you|that you|if you|it if|it when)\b", x, re.IGNORECASE):
        return None
    subject = _category(x)
    if subject is None:
        head, _, purpose = (p.strip() for p in _partition(_FOR, x))
        if purpose and not _deictic(purpose):
            subject = f"preference:{_object_key(purpose)}"
        else:
            first, _, second = (p.strip() for p in _partition(_COMPARE, head))
            if x.lower().startswith("to ") or not second or _deictic(second):
                subject = f"preference:{_object_key(head)}"
            else:
                subject = "preference:" + " vs ".join(sorted((_object_key(first), _object_key(second))))
    return Statement(_finish(text), (PREFS,), subject)


def _partition(pattern: re.Pattern[str], text: str) -> tuple[str, str, str]:
    found = pattern.search(text)
    if found is None:
        return text, "", ""
    return text[: found.start()], found.group(0), text[found.end():]


_LIKE = _re(
    rf"^(?:i|we)\s+{_PREF_ADVERBS}(?P<verb>(?:(?:don't|do not|didn't|never|no longer|don't really|do not really)\s+"
    r"(?:really\s+)?)?(?:love|like|enjoy|adore|hate|dislike|detest|loathe|dig|fancy|appreciate|despise|"
    r"can't stand|cannot stand|can't get enough of|can't live without|could eat|care for|prefer)|"
    r"love love|am obsessed with|'m obsessed with)\s+(?P<obj>.+)$"
)
_INTO = _re(
    rf"^{_I_AM}\s+{_PREF_ADVERBS}(?P<verb>(?:not\s+|no longer\s+)?(?:(?:really|so|very|super|totally|quite|also|"
    r"pretty|such|a|an|big|huge|massive|great|real)\s+)*(?:into|obsessed with|fans? of|crazy about|passionate about|"
    r"keen on|fond of|addicted to|a sucker for|hooked on|mad about|nuts about|not into|enthusiasts? of|"
    r"lovers? of|enthusiast))\s+(?P<obj>.+)$"
)


@_rule
def _like(text: str, depth: int) -> Statement | None:
    found = _LIKE.match(text) or _INTO.match(text)
    if found is None:
        return None
    obj = found.group("obj").strip()
    if _deictic(obj) or re.match(r"^(?:to (?:think|believe|say|know|ask)|being (?:told|asked))\b", obj, re.I):
        return None
    if re.match(r"^(?:the way|how|when|it when|that you)\b", obj, re.IGNORECASE):
        return None
    subject = _category(obj) or f"preference:{_object_key(obj)}"
    return Statement(_finish(text), (PREFS,), subject)


_SWITCH = _re(
    r"^(?:i|we)\s+(?:(?:just|recently|finally|actually|now|also|officially)\s+)*(?:have\s+|'ve\s+)?"
    r"(?:switched|changed|converted|transitioned|upgraded|migrated|went over|moved over)\s+(?:over\s+)?"
    r"(?:from\s+(?P<old>.+?)\s+)?to\s+(?P<new>.+)$"
    r"|^(?:i|we)\s+(?:(?:just|recently|finally|actually|now|also)\s+)*(?:changed|switched)\s+my\s+(?P<what>[\w ]+?)"
    r"\s+to\s+(?P<new2>.+)$"
)


@_rule
def _switch(text: str, depth: int) -> Statement | None:
    found = _SWITCH.match(text)
    if found is None:
        return None
    new = found.group("new") or found.group("new2") or ""
    if _deictic(new):
        return None
    what = found.group("what")
    subject = _category(new) or _category(found.group("old") or "")
    if what is not None:
        subject = _attribute_subject(f"my {what}") or subject or f"preference:{_key(what)}"
    return Statement(_finish(text), (PREFS, DETAILS, PERSONAL), subject)


# --------------------------------------------------------------------------------------------
# Rules: plans, events and dates
# --------------------------------------------------------------------------------------------

_PLAN = _re(
    rf"^{_I_AM}\s+{_ADVERBS}(?:also\s+|finally\s+|so\s+)?(?P<verb>going|flying|travel(?:l)?ing|heading|driving|"
    r"moving|relocating|visiting|getting|starting|leaving|taking|having|planning|hoping|attending|hosting|"
    r"throwing|running|doing|celebrating|graduating|retiring|expecting|due|off|booked|scheduled|meeting|"
    r"seeing|spending|buying|selling|renovating|launching|applying|interviewing|presenting|competing|"
    r"participating|returning|coming|adopting|thinking (?:of|about)|considering|about to|set to|"
    r"signed up|registered|enrolled|organi[sz]ing|preparing|training|opening|closing|changing|quitting|"
    r"leaving|emigrating|flying out|going back|coming back|taking off|competing)\b(?P<rest>.*)$"
)
_WILL = _re(
    r"^(?:i|we)(?:'ll|\s+will|\s+plan\s+to|\s+intend\s+to|\s+want\s+to|\s+hope\s+to|\s+need\s+to|\s+have\s+to|"
    r"\s+must|\s+am\s+planning\s+(?:to|on)|'m\s+planning\s+(?:to|on)|\s+are\s+planning\s+(?:to|on)|"
    r"'re\s+planning\s+(?:to|on)|\s+have\s+(?:a\s+)?plans?\s+to|'ve\s+(?:got\s+)?(?:a\s+)?plans?\s+to|"
    r"\s+(?:just\s+)?booked|\s+(?:just\s+)?scheduled|\s+registered\s+for|\s+signed\s+up\s+for|"
    r"'m\s+supposed\s+to|\s+am\s+supposed\s+to|\s+should)\s+(?P<rest>.+)$"
)
_TRAVEL = frozenset(
    "going flying travelling traveling heading driving leaving returning coming visiting moving relocating "
    "emigrating going back coming back flying out taking off".split()
)
_LIFE_EVENT = _re(
    r"\b(?:married|engaged|divorced|a baby|pregnant|twins|a (?:new )?job|retire|graduat\w*|a house|a home|"
    r"an apartment|a flat|a car|a dog|a puppy|a cat|a kitten|surgery|an operation|a marathon|a promotion|"
    r"(?:my|our) (?:own )?business|a company|a startup|a degree|a phd|a master's|to college|to university|"
    r"abroad|a sabbatical|parental leave|maternity leave|paternity leave|a new role|a course|a bootcamp)\b"
)
# Case-sensitive on purpose: a capital letter is how "going to Japan" differs from "going to bed".
_DESTINATION = re.compile(r"^\s+(?:back\s+)?(?:to|for|out to|over to)\s+(?:the\s+)?[A-Z]")
_NOT_A_PLAN = _re(
    r"^\s*(?:to\s+)?(?:\w+\s+)?(?:it|that|this|them|you)\b|^\s*(?:to\s+)?(?:bed|sleep|the bathroom|the toilet|"
    r"grab|check|try|look|see if|ask|go now|be right back|brb|have to|need to|think|be honest|be fine|"
    r"be late|be back|get back to you|let you know|tell you|send you|call you|text you|do it|do that|"
    r"leave (?:now|soon)|head out|log off|sign off|go|lose it)\b"
)


@_rule
def _plan(text: str, depth: int) -> Statement | None:
    found = _PLAN.match(text)
    if found is not None:
        verb = found.group("verb").lower()
        rest = found.group("rest")
        if _NOT_A_PLAN.match(rest) and not _LIFE_EVENT.search(rest):
            return None
        destination = verb in _TRAVEL and _DESTINATION.match(rest)
        if not (_TIME.search(rest) or destination or _LIFE_EVENT.search(rest)
                or verb in {"expecting", "due", "graduating", "retiring"}):
            return None
        hedged = verb.startswith(("thinking", "considering", "hoping"))
        return Statement(_finish(text), (DETAILS, PERSONAL), confidence=HEDGED if hedged else CONFIDENT)
    found = _WILL.match(text)
    if found is not None:
        rest = found.group("rest")
        if _NOT_A_PLAN.match(rest) or re.search(r"\b(?:you|your)\b", rest, re.IGNORECASE):
            return None
        time = _TIME.search(rest)
        if time is None or time.group(0).lower() in {"someday", "one day"}:
            return None
        return Statement(_finish(text), (DETAILS, PERSONAL))
    return None


_MY_EVENT = _re(
    rf"^(?:my|our)\s+(?:[\w'-]+\s+){{0,2}}?(?P<ev>{_EVENTS}|lease|visa|passport|contract|subscription|due date|"
    r"thesis|dissertation|membership|insurance|license|licence|warranty|semester|internship|new job|"
    r"first day|last day|baby|twins)s?\s+(?P<verb>is|are|was|were|starts?|ends?|expires?|begins?|'s|got|"
    r"has been|have been|will be|gets|lands?|leaves?|departs?|arrives?)\b(?P<rest>.*)$"
)


@_rule
def _my_event(text: str, depth: int) -> Statement | None:
    found = _MY_EVENT.match(text)
    if found is None:
        return None
    rest = found.group("rest")
    if not (_TIME.search(rest) or re.search(r"\b(?:cancell?ed|postponed|rescheduled|moved|delayed|approved|"
                                             r"accepted|rejected|over|done|finished)\b", rest, re.IGNORECASE)):
        return None
    return Statement(_finish(text), (DETAILS, PERSONAL))


_MILESTONE = _re(
    r"^(?:i|we)\s+(?:(?:just|recently|finally|officially|also|actually|now|have|'ve|already|successfully)\s+)*"
    r"(?P<verb>adopted|graduated|retired|published|welcomed|was diagnosed with|got diagnosed with|"
    r"was promoted|got promoted|was hired|got hired|was accepted|got accepted|got married|got engaged|"
    r"got divorced|got a new job|got a job|had a baby|had twins|had surgery|was laid off|got laid off|"
    r"was fired|got fired|started|began|took up|picked up|quit|gave up|enrolled|signed up for|became|"
    r"launched|defended|tore|sprained|fractured|broke|joined|won|bought|sold|got|passed|failed|finished|"
    r"completed|ran|climbed|visited|went|traveled|travelled|flew|returned|met|celebrated|earned|received|"
    r"opened|closed|left|lost|booked|moved|had|changed|started working|became a|turned|hit)\b(?P<rest>.*)$"
)
_MILESTONE_VERBS = frozenset(
    {"adopted", "graduated", "retired", "published", "welcomed", "was diagnosed with", "got diagnosed with",
     "was promoted", "got promoted", "was hired", "got hired", "was accepted", "got accepted", "got married",
     "got engaged", "got divorced", "got a new job", "got a job", "had a baby", "had twins", "had surgery",
     "was laid off", "got laid off", "was fired", "got fired", "started", "began", "took up", "picked up",
     "quit", "gave up", "enrolled", "signed up for", "became", "launched", "defended", "tore", "sprained",
     "fractured", "joined", "won", "started working", "became a"}
)
_BIG_OBJECT = _re(
    r"\b(?:house|home|apartment|flat|condo|car|dog|puppy|cat|kitten|baby|degree|diploma|license|licence|phd|"
    r"master's|masters|marathon|half marathon|exam|bar exam|driving test|thesis|dissertation|business|company|"
    r"startup|promotion|new job|job|tattoo|leg|arm|wrist|ankle|knee|back|hip|collarbone|finger|toe|nose|"
    r"award|prize|scholarship|grant|medal|race|championship|competition|visa|green card|citizenship|"
    r"mortgage|loan|pilot's license|black belt)\b"
)
_MILESTONE_SUBJECTS: tuple[tuple[re.Pattern[str], str], ...] = (
    (_re(r"^(?:got|was) (?:married|engaged|divorced)\b|^broke up\b"), "personal:relationship status"),
    (_re(r"^(?:got a (?:new )?job|started (?:working|a new job)|joined)\b.*\b(?:at|with)\s+\S"),
     "personal:employer"),
    (_re(r"^(?:quit|left|lost) my job\b|^(?:was|got) (?:laid off|fired)\b"), "personal:employer"),
    (_re(r"^retired\b|^(?:was|got) promoted to\b|^became an? (?:\w+\s+)?(?:" + "|".join(sorted(_JOBS)) + r")\b"),
     "personal:job"),
    (_re(r"^moved (?:back\s+)?(?:to|into)\b"), "personal:location"),
    (_re(r"^turned \d+\b"), "personal:age"),
)


@_rule
def _milestone(text: str, depth: int) -> Statement | None:
    found = _MILESTONE.match(text)
    if found is None:
        return None
    verb = found.group("verb").lower()
    rest = found.group("rest").strip()
    if not rest and verb not in {"graduated", "retired", "got married", "got engaged", "got divorced",
                                 "got promoted", "was promoted", "got hired", "was hired", "had a baby",
                                 "had twins", "got fired", "got laid off", "was laid off", "was fired"}:
        return None
    if rest and _deictic(rest):
        return None
    time = _TIME.search(rest)
    long_lived = time is not None and not _SHORT_LIVED.fullmatch(time.group(0))
    if not (verb in _MILESTONE_VERBS or long_lived or (_BIG_OBJECT.search(rest) and verb not in {"had", "got"})):
        return None
    tail = text[found.start("verb"):]
    subject = next((s for p, s in _MILESTONE_SUBJECTS if p.match(tail)), None) or _category(rest)
    if verb in {"quit", "gave up"} and re.search(rf"\b{_FOODS}\b", rest, re.IGNORECASE):
        subject = "personal:diet"
    return Statement(_finish(text), (DETAILS, PERSONAL), subject)


# --------------------------------------------------------------------------------------------
# Rules: wishes, habits and identity
# --------------------------------------------------------------------------------------------

_WISH = _re(
    r"^(?:i|we)(?:'d|\s+would)\s+(?:really\s+|so\s+|absolutely\s+)?love\s+to\s+(?P<a>.+)$"
    r"|^(?:i|we)\s+wish\s+(?:i|we)\s+(?:could|knew how to|had (?:more\s+)?time to|were able to|was able to|"
    r"lived|had|spoke|could afford)\s+(?P<b>.+)$"
    r"|^(?:i|we)(?:'d|\s+would)\s+(?:really\s+)?like\s+to\s+(?P<c>.+?)\s+(?:someday|one day|eventually|in the future|"
    r"at some point|before i die|sometime|in my lifetime)$"
    r"|^(?:someday|one day|eventually),?\s+(?:i|we)\s+(?:want|hope|would like|'d like|'d love|would love|plan|"
    r"dream|intend)\s+to\s+(?P<d>.+)$"
    r"|^(?:i|we)\s+(?:really\s+)?(?:hope|dream|want|plan|intend|aspire)\s+(?:to|of)\s+(?P<e>.+?)\s+"
    r"(?:someday|one day|eventually|in the future|at some point|before i die|in my lifetime)$"
    r"|^(?:my|our)\s+(?:big\s+|biggest\s+|life(?:long)?\s+)?(?:dream|goal|ambition|wish)\s+is\s+to\s+(?P<f>.+)$"
    r"|^(?:i|we)(?:'ve|\s+have)\s+always\s+wanted\s+to\s+(?P<g>.+)$"
    r"|^(?:i|we)\s+dream\s+of\s+(?P<h>.+)$"
    r"|^(?:i|we)(?:'ll|\s+will)\s+(?P<i>.+?)\s+(?:someday|one day|eventually|at some point)$"
)


@_rule
def _wish(text: str, depth: int) -> Statement | None:
    """Keep a wish as a preference at lower confidence: it says what the user cares about."""
    found = _WISH.match(text)
    if found is None:
        return None
    what = next((v for v in found.groups() if v), "")
    if _deictic(what) or re.search(r"\b(?:you|your)\b", what, re.IGNORECASE):
        return None  # "I'd love to hear your thoughts" is politeness, not a wish
    return Statement(_finish(text), (PREFS, PERSONAL), confidence=HEDGED)


_HABIT = _re(
    r"^(?:i|we)\s+(?:usually|always|often|normally|typically|generally|rarely|seldom|never|mostly|regularly|"
    r"tend to|like to|try to|every (?:day|morning|night|evening|week|weekend)|sometimes|occasionally|"
    r"frequently|constantly|habitually)\s+(?P<vp>.+)$"
)
_FREQUENCY_TAIL = _re(
    rf"^(?:i|we)\s+(?P<vp>(?!am\b|'m\b|have to\b)\w+\s.+?)\s+(?:every\s+(?:single\s+)?(?:day|morning|evening|night|"
    rf"week|weekend|month|year|{_DAY})|daily|weekly|nightly|each (?:day|morning|week|night)|on weekends|"
    rf"on (?:{_DAY})s|most days|twice a \w+|once a \w+|\w+ times a \w+|in the mornings?|at night|before bed|"
    r"after work|before work|on my commute|religiously|whenever i can)$"
)
_NOT_HABITS = _re(
    r"^(?:said|say|told|tell|asked|ask|meant|mean|thought|think|knew|know|understood|understand|forget|forgot|"
    r"remember|get|got|have to|had to|need|wonder|wondered|feel|felt|see|saw|do that|do this|did|"
    r"answer|reply|respond|use (?:it|that|this)|agree|disagree|lie|lied|care|mind)\b"
)


@_rule
def _habit(text: str, depth: int) -> Statement | None:
    found = _HABIT.match(text) or _FREQUENCY_TAIL.match(text)
    if found is None:
        return None
    vp = found.group("vp").strip()
    if _NOT_HABITS.match(vp) or _deictic(vp) or len(vp.split()) < 1:
        return None
    return Statement(_finish(text), (PREFS, PERSONAL))


_IDENTITY = _re(
    rf"^{_I_AM}\s+(?:(?:also|now|currently|still|actually|basically|by profession|by trade|technically|"
    r"officially|finally|proudly|originally|primarily|mainly|just)\s+)*(?P<np>(?:a|an)\s+.+)$"
)
_NOT_IDENTITY = _re(
    r"^(?:a|an)\s+(?:(?:huge|big|total|complete|absolute|real|little|such an?|bit of an?)\s+)*"
    r"(?:dummy|noob|klutz|dork|loser|bit|little|lot|tad|mess|wreck|fan|huge fan|big fan|idiot|fool|moron|genius|"
    r"disaster|"
    r"nervous wreck|sucker|few|couple|second|moment|minute|hurry|rush|good mood|bad mood|mood|way|sense|"
    r"position|situation|meeting|call|car|train|bus|plane|hurry|fan of|quick|tight spot|pickle|bind|"
    r"loss|state|stage|point|place|lot of)\b"
)
_PERSON_TYPES = _re(
    r"\b(?:morning person|night owl|early bird|early riser|night person|cat person|dog person|coffee person|"
    r"tea person|beach person|mountain person|homebody|people person|"
    r"morning guy|night guy|planner|minimalist|perfectionist|neat freak|foodie|bookworm|gym rat|"
    r"couch potato|picky eater|light sleeper|heavy sleeper|social butterfly|creature of habit)\b"
)
_HEAD_CUT = _re(r"\s+(?:at|in|for|from|with|of|who|that|and|on|by|since|based|working|specializing|here|there|"
                r"now|too|though|but|so|because)\b")


@_rule
def _identity(text: str, depth: int) -> Statement | None:
    found = _IDENTITY.match(text)
    if found is None:
        return None
    np = found.group("np").strip()
    if _NOT_IDENTITY.match(np):
        return None
    if _PERSON_TYPES.search(np):
        return Statement(_finish(text), (PREFS, PERSONAL))
    head_phrase = _HEAD_CUT.split(np, maxsplit=1)[0]
    words = head_phrase.lower().split()
    head = words[-1] if len(words) > 1 else ""
    if not head:
        return None
    if re.search(r"\b(?:mom|mum|dad|mother|father|parent)\s+of\s+(?:\d+|two|three|four|five|six)\b", np, re.I):
        return Statement(_finish(text), (PERSONAL,), "personal:children")
    if re.match(r"^an only child\b", np, re.IGNORECASE):
        return Statement(_finish(text), (PERSONAL,), "personal:siblings")
    if head in {"student", "undergrad", "undergraduate", "grad", "postdoc", "phd"}:
        return Statement(_finish(text), (PERSONAL,), "personal:education")
    if head in _HOBBY_WORDS:
        return Statement(_finish(text), (PERSONAL, PREFS))
    is_job = head in _JOBS or (len(head) > 4 and head not in _NOT_JOBS and bool(_JOB_SUFFIX.search(head)))
    if head in _NOT_JOBS or not is_job:
        return Statement(_finish(text), (PERSONAL,))
    return Statement(_finish(text), (PERSONAL,), "personal:job")


# --------------------------------------------------------------------------------------------
# Parsing: sentences -> clauses -> statements
# --------------------------------------------------------------------------------------------

# Slots where "not anymore" carries no new value: "I don't live in Berlin anymore" only retracts.
_RETRACT_SLOTS = frozenset(
    {None, "personal:location", "personal:employer", "personal:job", "personal:relationship status",
     "personal:education"}
)
_NO_LONGER = _re(r"\b(?:any\s?more|any longer|no longer|not now)\b")
_POSITIVE = (
    (_re(r"^(?P<s>i|we)\s+(?:don't|do not|didn't|no longer|won't)\s+(?:really\s+)?(?P<rest>.+)$"), "{s} {rest}"),
    (_re(r"^(?P<s>i'm|i am|we're|we are)\s+(?:not|no longer)\s+(?P<rest>.+)$"), "{s} {rest}"),
    (_re(r"^(?P<s>i|we)\s+(?:haven't|have not)\s+got\s+(?P<rest>.+)$"), "{s} have {rest}"),
    (_re(r"^(?P<s>my|our)\s+(?P<x>.+?)\s+(?:is not|isn't|is no longer|'s not|'s no longer)\s+(?P<rest>.+)$"),
     "{s} {x} is {rest}"),
)
_ANYMORE = _re(r"[\s,]*\b(?:any\s?more|any longer|not now)\b")
_REFER_BACK = _re(
    r"^(?:that's|that is|this is|it's|it is|that was|that's now|this was)\s+(?:not\s+(?:true|right|correct|the case|"
    r"accurate|a thing|so)|no longer\s+(?:true|the case|accurate|correct|right|a thing)|wrong|outdated|"
    r"out of date|old news|incorrect|false|not how it is|changed|over|in the past)"
    r"(?:\s+any\s?more|\s+any longer)?(?:\s+now)?$"
    r"|^not any\s?more$|^no longer(?: true| the case)?$|^(?:that|this|it)\s+(?:has|'s)\s+changed$"
    r"|^(?:that's|that has|that)\s+changed$|^scratch that$|^(?:please\s+)?(?:forget|ignore|disregard)\s+"
    r"(?:that|what i (?:just )?said)$|^never mind what i said$|^(?:that's|that is) not me any\s?more$"
    r"|^not true any\s?more$|^(?:that's|that is) not true$"
)
_CORRECTION = _re(r"(?:,|\s[-–—])\s*(?:scratch that|no wait|i mean|sorry,? i meant|correction|or rather)\b[\s,:]*")
# "I'd like you to ..." and "I'd rather you didn't ..." are instructions, not conditionals.
_POLITE_WOULD = _re(r"^(?:i|we)(?:'d|\s+would)\s+(?:(?:really\s+)?like\s+you\s+to|rather\s+you)\b")
# Longer "sentences" are pastes (logs, code, documents); skipping them also bounds the regex work.
_MAX_SENTENCE = 1000
#: Marker for "that's not true anymore": the extractor resolves it to the statement it refers to.
_BACK = Statement("", (), is_retraction=True)


def _match_rules(text: str, depth: int) -> Statement | None:
    for rule in _RULES:
        found = rule(text, depth)
        if found is not None:
            return found
    return None


def _parse_clause(text: str, depth: int = 0) -> Statement | None:
    """Return the statement one clause makes, or None when it makes no memorable one."""
    text, hedged = _unhedge(_clean(text))
    if not text or _NOT_A_CLAIM.match(text):
        return None
    found = _match_rules(text, depth)
    if _NO_LONGER.search(text) and (found is None or found.subject in _RETRACT_SLOTS) and not (
        found is not None and found.is_retraction
    ):
        positive = _positive(text)
        inner = _match_rules(positive, depth) if positive else None
        if inner is not None and not inner.is_retraction and inner.fact:
            found = Statement(inner.fact, _topics(*inner.topics, INSTRUCTIONS), inner.subject, is_retraction=True)
    if found is not None and hedged:
        found = replace(found, confidence=min(found.confidence, HEDGED))
    return found


def _positive(text: str) -> str | None:
    """Return the statement a "not anymore" clause denies ("I don't live in X anymore" -> "I live in X")."""
    for pattern, template in _POSITIVE:
        found = pattern.match(text)
        if found is not None:
            positive = template.format(**found.groupdict())
            return _squash(_ANYMORE.sub("", positive))
    return None


def _parse_sentence(sentence: str) -> list[Statement]:
    """Return the statements of one sentence; :data:`_BACK` stands for "that's not true anymore"."""
    raw = sentence.strip()
    if len(raw) > _MAX_SENTENCE:
        return []  # a pasted log or code block, not a statement about the user
    text = _clean(raw)
    if not text:
        return []
    if _is_question(raw, text):
        polite = _POLITE_REQUEST.match(text)
        if polite is None:
            return []
        text = polite.group("rest")
    correction = _CORRECTION.search(text)
    if correction is not None:
        # "I live in Rome, scratch that, Milan": only a complete restatement after the marker counts.
        text = _clean(text[correction.end():])
        if not text:
            return []
    unhedged, _ = _unhedge(text)
    if _REFER_BACK.match(unhedged):
        return [_BACK]
    if _HYPOTHETICAL.search(unhedged) and not (
        _WISH.match(unhedged) or _PREFER.match(unhedged) or _POLITE_WOULD.match(unhedged)
    ):
        return []
    statements: list[Statement] = []
    for clause in _clauses(text):
        if _REFER_BACK.match(_clean(clause)):
            statements.append(_BACK)
            continue
        found = _parse_clause(clause)
        if found is not None and found.fact:
            statements.append(found)
    return statements


def _resolve(statements: Iterable[Statement], history: list[Statement]) -> list[Statement]:
    """Replace each "that's not true anymore" by a retraction of the latest statement before it."""
    resolved: list[Statement] = []
    for statement in statements:
        if statement is _BACK:
            if not history:
                continue
            target = history[-1]
            resolved.append(
                Statement(target.fact, _topics(*target.topics, INSTRUCTIONS), target.subject, is_retraction=True)
            )
            history.pop()
            continue
        resolved.append(statement)
        if not statement.is_retraction:
            history.append(statement)
    return resolved


def parse_statements(text: str) -> list[Statement]:
    """Return the memorable statements of one user message, in order."""
    statements = [s for sentence in split_sentences(text) for s in _parse_sentence(sentence)]
    return _resolve(statements, [])


# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------

_AGENT_CLAIM = _re(
    r"\byou\s+(?:(?:still|also|currently|now|really|mentioned|said|told me|previously|earlier)\s+(?:that\s+)?"
    r"(?:you\s+)?)*(?P<verb>are|live|work|like|love|prefer|have|enjoy|hate|eat|play|speak|study|own|drive|use|"
    r"go by|were|moved|switched)\b(?P<rest>[^.?!,;]*)"
)
_FIRST_PERSON_START = _re(r"^(?:i|i'm|i've|i'd|i'll|my|we|we're|we've|our)\b")
# Words of a custom topic's label/description that say nothing about its subject matter.
_TOPIC_NOISE = frozenset(
    _lemma(w) for w in """love like enjoy prefer hate dislike want wish hope need have use think feel know tell
    say mention talk discuss ask remember forget state express describe include relate concern regard
    mentioned stated expressed described anything everything specific general particular kind type""".split()
)
_KIND = {
    USER_PERSONAL_INFO: "personal information",
    USER_PREFERENCES: "a preference",
    KEY_CONVERSATION_DETAILS: "a key detail",
    EXPLICIT_INSTRUCTIONS: "an instruction",
}


def _agent_claims(text: str) -> list[Statement]:
    """Return what an agent turn says about the user, in the user's words ("you live in X" -> "I live in X")."""
    found: list[Statement] = []
    normalised = re.sub(r"\byou're\b", "you are", text.translate(_QUOTES), flags=re.IGNORECASE)
    normalised = re.sub(r"\byour\b", "my", normalised, flags=re.IGNORECASE)
    for match in _AGENT_CLAIM.finditer(normalised):
        verb = match.group("verb").lower()
        verb = {"are": "am", "were": "was"}.get(verb, verb)
        statement = _parse_clause(f"I {verb}{match.group('rest')}", _MAX_DEPTH)
        if statement is not None and not statement.is_retraction:
            found.append(statement)
    return found


def _loose_statements(sentence: str) -> list[Statement]:
    """Return first-person clauses no rule understood, as topic-less statements for custom topics."""
    raw = sentence.strip()
    text = _clean(raw)
    if not text or _is_question(raw, text):
        return []
    if _HYPOTHETICAL.search(text):
        return []
    loose: list[Statement] = []
    for clause in _clauses(text):
        clause, _ = _unhedge(_clean(clause))
        if len(clause.split()) < 3 or not _FIRST_PERSON_START.match(clause) or _NOT_A_CLAIM.match(clause):
            continue
        if _parse_clause(clause) is None:
            loose.append(Statement(_finish(clause), (), confidence=HEDGED))
    return loose


@dataclass(slots=True)
class _TopicPicker:
    """Chooses each statement's topic among the requested ones."""

    managed: frozenset[str]
    custom: list[tuple[str, frozenset[str]]] = field(default_factory=list)

    @classmethod
    def of(cls, topics: Sequence[Topic]) -> _TopicPicker:
        if not topics:
            topics = [Topic(label, description) for label, description in MANAGED_TOPICS.items()]
        managed = frozenset(t.label for t in topics if t.is_managed)
        custom = [
            (t.label, content_words(f"{t.label.replace('_', ' ').replace('-', ' ')} {t.description}") - _TOPIC_NOISE)
            for t in topics
            if not t.is_managed
        ]
        return cls(managed, custom)

    def pick(self, statement: Statement) -> str | None:
        """Return the best requested topic: a custom topic sharing words, else the first managed fit."""
        if self.custom:
            words = content_words(statement.fact)
            best, score = None, 0
            for label, topic_words in self.custom:
                overlap = len(words & topic_words)
                if overlap > score:
                    best, score = label, overlap
            if best is not None:
                return best
        return next((label for label in statement.topics if label in self.managed), None)


class OfflineExtractor(Extractor):
    """Extract facts with rules: no LLM, no download, thousands of events per second.

    Only events whose author is in ``user_authors`` (default ``"user"``) are read; an imported
    conversation between two people may use ``"user"`` for both, since only the text matters.
    ``examples`` (few-shot pairs for LLM extraction) are ignored.
    """

    def __init__(self, *, user_authors: Iterable[str] = ("user",)) -> None:
        self._authors = frozenset(a.lower() for a in user_authors)

    async def extract(
        self,
        *,
        events: Sequence[SourceEvent],
        topics: Sequence[Topic],
        examples: Sequence[Mapping[str, object]] = (),
    ) -> ExtractionResult:
        """Extract candidate facts for ``topics`` and report one outcome per event."""
        return self.extract_sync(events=events, topics=topics)

    def extract_sync(self, *, events: Sequence[SourceEvent], topics: Sequence[Topic]) -> ExtractionResult:
        """Run :meth:`extract` without an event loop (for scripts and benchmarks)."""
        picker = _TopicPicker.of(topics)
        candidates: list[Candidate] = []
        outcomes: list[EventOutcome] = []
        history: list[Statement] = []  # what "that's not true anymore" may refer to
        for event in events:
            text = event.text.strip() if event.text else ""
            if event.author.lower() not in self._authors:
                if text:
                    history.extend(_agent_claims(text))
                outcomes.append(EventOutcome(event.id, "skipped", NOT_USER))
                continue
            if not text:
                outcomes.append(EventOutcome(event.id, "skipped", NO_TEXT))
                continue
            sentences = split_sentences(text)
            statements = _resolve([s for sentence in sentences for s in _parse_sentence(sentence)], history)
            if picker.custom:
                statements += [s for sentence in sentences for s in _loose_statements(sentence)]
            found = self._candidates(event, statements, picker)
            candidates.extend(found)
            if found:
                outcomes.append(EventOutcome(event.id, "extracted", _reason(found), len(found)))
            else:
                outcomes.append(EventOutcome(event.id, "skipped", NOT_REQUESTED if statements else NOTHING))
        return ExtractionResult(candidates=candidates, outcomes=outcomes, usage={})

    @staticmethod
    def _candidates(event: SourceEvent, statements: Sequence[Statement], picker: _TopicPicker) -> list[Candidate]:
        found: list[Candidate] = []
        seen: set[tuple[str, str, bool]] = set()
        for statement in statements:
            topic = picker.pick(statement)
            key = (statement.fact.lower(), topic or "", statement.is_retraction)
            if topic is None or key in seen:
                continue
            seen.add(key)
            found.append(
                Candidate(
                    fact=statement.fact,
                    topic=topic,
                    confidence=statement.confidence,
                    source_event_ids=(event.id,),
                    event_time=event.timestamp,
                    subject=statement.subject,
                    is_retraction=statement.is_retraction,
                )
            )
        return found


def _reason(candidates: Sequence[Candidate]) -> str:
    kinds: list[str] = []
    for c in candidates:
        kind = "a request to forget" if c.is_retraction else _KIND.get(c.topic, f"custom topic {c.topic}")
        if kind not in kinds:
            kinds.append(kind)
    return "found " + ", ".join(kinds)


# --------------------------------------------------------------------------------------------
# Consolidation
# --------------------------------------------------------------------------------------------

#: Neighbours with this id prefix are earlier candidates of the same batch (the generation
#: pipeline offers them so a consolidator can see in-batch conflicts); this consolidator handles
#: the batch itself and only acts on stored memories.
BATCH_PREFIX = "candidate:"

_CONTRACTIONS = (
    (re.compile(r"\bi'm\b"), "i am"), (re.compile(r"\bwe're\b"), "we are"), (re.compile(r"\bi've\b"), "i have"),
    (re.compile(r"\bi'd\b"), "i would"), (re.compile(r"\bi'll\b"), "i will"), (re.compile(r"\bcan't\b"), "cannot"),
    (re.compile(r"\bwon't\b"), "will not"), (re.compile(r"n't\b"), " not"), (re.compile(r"\bfavorite\b"), "favourite"),
    (re.compile(r"\bcolor\b"), "colour"),
)
_SETTLE = (
    (_re(r"^(?P<s>i|we)\s+no\s+longer\s+"), r"\g<s> don't "),
    (_re(r"^(?P<s>i'm|we're)\s+no\s+longer\s+"), r"\g<s> not "),
    (_re(r"^(?P<s>i|we)\s+am\s+no\s+longer\s+"), r"\g<s> am not "),
    (_re(r"[\s,]*\b(?:now|actually|any\s?more|any longer|these days|nowadays|from now on)\b"), ""),
)
_THIRD_PERSON = (
    (_re(r"^(?:the\s+)?user's\s+"), "my "),
    (_re(r"^(?:the\s+)?user\s+is\s+"), "I am "),
    (_re(r"^(?:the\s+)?user\s+has\s+"), "I have "),
    (_re(r"^(?:the\s+)?user\s+(?:does not|doesn't)\s+"), "I don't "),
    (_re(r"^(?:the\s+)?user\s+(?P<v>\w+?)(?:es|s)\b"), r"I \g<v>"),
    (_re(r"^(?:the\s+)?user\s+"), "I "),
)


def _normal(fact: str) -> str:
    """Return a comparison form of a fact: settled, lower-case, contractions expanded, no punctuation."""
    text = _settle(fact).lower().translate(_QUOTES)
    for pattern, replacement in _CONTRACTIONS:
        text = pattern.sub(replacement, text)
    return " ".join(_WORD.findall(text.replace("'", " ")))


def _settle(fact: str) -> str:
    """Drop change markers from a fact that replaces an older one ("I now prefer X" -> "I prefer X")."""
    text = fact.translate(_QUOTES)
    for pattern, replacement in _SETTLE:
        text = pattern.sub(replacement, text)
    return _finish(text)


def _first_person(fact: str) -> str:
    """Rewrite a third-person memory ("The user lives in Berlin") in the first person."""
    text = fact.strip()
    for pattern, replacement in _THIRD_PERSON:
        new = pattern.sub(replacement, text, count=1)
        if new != text:
            # "lives" -> "live" is right, "does" -> "do" too; a stem cut too far ("us" from "uses") is fixed up.
            return re.sub(r"^I (us|lik|lov|mov|prefer|hat|enjoy|liv|tak|mak|driv|hav)\b",
                          lambda m: "I " + {"us": "use", "lik": "like", "lov": "love", "mov": "move", "hat": "hate",
                                            "liv": "live", "tak": "take", "mak": "make", "driv": "drive",
                                            "hav": "have"}.get(m.group(1), m.group(1)), new)
    return text


@lru_cache(maxsize=4096)
def _subject_of(fact: str) -> str | None:
    """Return the slot a stored fact fills, read with the extraction rules (None when unknown)."""
    for statement in parse_statements(_first_person(fact)):
        if not statement.is_retraction and statement.subject:
            return statement.subject
    return None


def _same(a: str, b: str) -> bool:
    """Tell whether two facts say the same thing (modulo fillers, contractions and change markers)."""
    if _normal(a) == _normal(b):
        return True
    return content_words(_settle(a)) == content_words(_settle(b)) and _negative(a) == _negative(b)


def _conflicts(a: str, b: str) -> bool:
    """Tell whether two related facts disagree: opposite polarity, or one value swapped for another."""
    wa, wb = _value_words(_settle(a)), _value_words(_settle(b))
    if _negative(_settle(a)) != _negative(_settle(b)):
        return bool(wa & wb) and len(wa & wb) / len(wa | wb) >= 0.5
    shared = content_words(a) & content_words(b)
    return len(shared) >= 2 and len(wa - wb) == 1 and len(wb - wa) == 1


def _slot(subject: str) -> str:
    return subject.split(":", 1)[-1]


class OfflineConsolidator(Consolidator):
    """Reconcile candidates with stored memories using subjects, similarities and word overlap.

    ``duplicate_threshold``: a stored memory at least this similar (cosine) that does not
    contradict the candidate makes it a duplicate. ``related_threshold``: a stored memory
    without a known slot must be at least this similar before a contradiction updates it, or a
    request to forget deletes it.
    """

    def __init__(self, duplicate_threshold: float = 0.90, related_threshold: float = 0.75) -> None:
        if not 0.0 <= related_threshold <= duplicate_threshold <= 1.0:
            raise ValueError("expected 0 <= related_threshold <= duplicate_threshold <= 1")
        self.duplicate_threshold = duplicate_threshold
        self.related_threshold = related_threshold

    async def consolidate(
        self,
        *,
        candidates: Sequence[Candidate],
        neighbours: Mapping[int, Sequence[Existing]],
    ) -> list[Action]:
        """Return exactly one action per candidate, in candidate order."""
        return self.consolidate_sync(candidates=candidates, neighbours=neighbours)

    def consolidate_sync(
        self, *, candidates: Sequence[Candidate], neighbours: Mapping[int, Sequence[Existing]]
    ) -> list[Action]:
        """Run :meth:`consolidate` without an event loop."""
        actions: list[Action | None] = [None] * len(candidates)
        self._within_batch(candidates, neighbours, actions)
        used: set[str] = set()  # stored memories already updated or deleted by this batch
        for i, candidate in enumerate(candidates):
            if actions[i] is not None:
                continue
            stored = [e for e in neighbours.get(i, ()) if not e.id.startswith(BATCH_PREFIX)]
            if candidate.is_retraction:
                actions[i] = self._retract(candidate, stored, used)
            else:
                actions[i] = self._decide(candidate, stored, used)
        return [a for a in actions if a is not None]

    def _within_batch(
        self,
        candidates: Sequence[Candidate],
        neighbours: Mapping[int, Sequence[Existing]],
        actions: list[Action | None],
    ) -> None:
        """Skip what a later candidate supersedes or retracts, and repeats of an earlier one."""
        for i, candidate in enumerate(candidates):
            if candidate.is_retraction:
                continue
            for later in candidates[i + 1:]:
                if later.is_retraction and _retracts(later, candidate.fact, candidate.subject):
                    actions[i] = _skip(candidate, "retracted later in the same conversation")
                    break
                if not later.is_retraction and candidate.subject and later.subject == candidate.subject:
                    repeated = _same(candidate.fact, later.fact)
                    reason = "repeated in" if repeated else "superseded later in"
                    actions[i] = _skip(candidate, f"{reason} the same conversation")
                    break
        kept: dict[str, int] = {}
        for i, candidate in enumerate(candidates):
            if actions[i] is not None or candidate.is_retraction:
                continue
            key = _normal(candidate.fact)
            repeat = key in kept or any(
                e.id.startswith(BATCH_PREFIX)
                and _batch_index(e.id) in kept.values()
                and e.similarity >= self.duplicate_threshold
                and not _conflicts(candidate.fact, e.fact)
                and not _different_slots(candidate.subject, e.subject)
                for e in neighbours.get(i, ())
            )
            if repeat:
                actions[i] = _skip(candidate, "repeated in the same conversation")
            else:
                kept[key] = i

    def _decide(self, candidate: Candidate, stored: Sequence[Existing], used: set[str]) -> Action:
        subject = candidate.subject or _subject_of(candidate.fact)
        for e in stored:
            if _same(candidate.fact, e.fact):
                return _skip(candidate, "already remembered")
        for e in stored:
            if e.id in used or subject is None or (e.subject or _subject_of(e.fact)) != subject:
                continue
            mine, theirs = _value_words(_settle(candidate.fact)), _value_words(_settle(e.fact))
            same_polarity = _negative(candidate.fact) == _negative(e.fact)
            if same_polarity and mine and mine <= theirs:
                return _skip(candidate, "already remembered")
            used.add(e.id)
            reason = "adds detail to" if same_polarity and theirs < mine else "new value for"
            return _action("UPDATE", candidate, e.id, _settle(candidate.fact), f"{reason} {_slot(subject)}")
        for e in stored:
            their_subject = e.subject or _subject_of(e.fact)
            if (
                e.similarity >= self.duplicate_threshold
                and not _different_slots(subject, their_subject)
                and not _conflicts(candidate.fact, e.fact)
            ):
                return _skip(candidate, "already remembered")
        for e in stored:
            their_subject = e.subject or _subject_of(e.fact)
            if (
                e.id not in used
                and e.similarity >= self.related_threshold
                and (subject is None or their_subject is None)
                and _conflicts(candidate.fact, e.fact)
            ):
                used.add(e.id)
                return _action("UPDATE", candidate, e.id, _settle(candidate.fact), "contradicts a stored memory")
        return _action("CREATE", candidate, None, candidate.fact, "new memory")

    def _retract(self, candidate: Candidate, stored: Sequence[Existing], used: set[str]) -> Action:
        subject = candidate.subject or _subject_of(candidate.fact)
        target = next((e for e in stored if _retracts(candidate, e.fact, e.subject or _subject_of(e.fact))), None)
        if target is None:
            similar = [
                e for e in stored
                if e.similarity >= self.duplicate_threshold
                or (e.similarity >= self.related_threshold and _value_words(candidate.fact) & _value_words(e.fact))
            ]
            target = max(similar, key=lambda e: e.similarity, default=None)
        if target is None:
            return _skip(candidate, "nothing to retract")
        if target.id in used:
            return _skip(candidate, "already retracted")
        used.add(target.id)
        what = f"forgets {_slot(subject)}" if subject else "the user asked to forget it"
        return _action("DELETE", candidate, target.id, None, what)


def _retracts(retraction: Candidate, fact: str, subject: str | None) -> bool:
    """Tell whether a request to forget names ``fact`` (same statement, or same slot and value)."""
    if _same(retraction.fact, fact):
        return True
    mine = retraction.subject or _subject_of(retraction.fact)
    if mine is None or subject != mine:
        return False
    wanted = _value_words(retraction.fact) - content_words(_slot(mine))
    return not wanted or bool(wanted & _value_words(fact))


def _different_slots(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a != b


def _batch_index(neighbour_id: str) -> int:
    try:
        return int(neighbour_id[len(BATCH_PREFIX):])
    except ValueError:
        return -1


def _skip(candidate: Candidate, reason: str) -> Action:
    return Action(kind="SKIP", candidate=candidate, target_id=None, fact=None, reason=reason)


def _action(kind: Literal["CREATE", "UPDATE", "DELETE"], candidate: Candidate, target: str | None,
            fact: str | None, reason: str) -> Action:
    return Action(kind=kind, candidate=candidate, target_id=target, fact=fact, reason=reason)
