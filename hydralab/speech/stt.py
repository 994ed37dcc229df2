"""Pluggable speech-to-text behind one :class:`Transcriber` interface.

Providers, chosen by :class:`SttConfig` (``provider``, ``model``, ``language``, ``api_key`` or
the provider's environment variable, ``base_url``) through :func:`make_transcriber`:

- ``local`` (default, offline): :class:`LocalTranscriber`, pocketsphinx 5 with a run-time domain
  LM;
- ``smallest`` / ``openai`` / ``deepgram``: HTTP batch transcription
  (:mod:`hydralab.speech.providers`), one ``httpx.AsyncClient`` per transcriber, retries with
  jittered backoff on 429/5xx/timeouts, a concurrency limit per provider.

The local transcriber builds a small 3-gram LM (``pocketsphinx.lm.ArpaBoLM``) from the
caller-supplied ``domain_text`` (agent instructions, tool names, generic domain phrases; never
the lines to be recognized) plus a built-in generic call-center corpus, restricted to words
of the bundled CMU dictionary. Building it takes ~0.3 s and happens lazily on
the first :meth:`LocalTranscriber.transcribe`, or up front with
``await transcriber.start()`` to keep that cost out of the first turn.

Every transcriber applies the same guards first (:func:`speech_guard`): audio shorter than
300 ms or without voiced audio (webrtcvad and an energy floor) is skipped without decoding or
a request (``too_short`` / ``no_speech``), so silence never becomes a phantom user turn.

Transcribers are fail-soft: :meth:`transcribe` never raises (except on cancellation); any
failure comes back as ``Transcript(text="", ok=False, error=...)``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import multiprocessing
import os
import random
import re
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from hydralab.secrets import redact
from hydralab.speech.providers import make_http_transcriber
from hydralab.speech.text import (
    MONTHS,
    cardinal,
    normalize_for_wer,
    ordinal,
    word_edit_distance,
)
from hydralab.speech.transcript import (
    DECODE_RATE_HZ,
    ERROR_CANCELLED,
    ERROR_CLOSED,
    ERROR_EMPTY,
    ERROR_NO_SPEECH,
    ERROR_TOO_SHORT,
    MIN_DURATION_MS,
    MIN_VOICED_DBFS,
    MIN_VOICED_FRAMES,
    SKIP_REASONS,
    SUPPORTED_PROVIDERS,
    SttConfig,
    Transcriber,
    Transcript,
    as_mono_int16,
    resample_int16,
    speech_guard,
    voiced_frames,
)

__all__ = [
    "DEFAULT_DECODER_OPTIONS",
    "ERROR_CANCELLED",
    "ERROR_CLOSED",
    "ERROR_EMPTY",
    "ERROR_NO_SPEECH",
    "ERROR_TOO_SHORT",
    "GENERIC_CORPUS",
    "MIN_DURATION_MS",
    "MIN_VOICED_DBFS",
    "MIN_VOICED_FRAMES",
    "SKIP_REASONS",
    "SUPPORTED_PROVIDERS",
    "LocalTranscriber",
    "SttConfig",
    "Transcriber",
    "Transcript",
    "lm_sentences",
    "make_transcriber",
    "speech_guard",
    "transcript_wer",
]


DEFAULT_DECODER_OPTIONS: Mapping[str, Any] = {"lw": 9.5}
"""pocketsphinx options of the local decoder (see :class:`LocalTranscriber`)."""


def transcript_wer(pairs: Iterable[tuple[str, str | None]]) -> dict[str, Any]:
    """Corpus WER of transcripts against intended lines.

    Args:
        pairs: ``(reference, hypothesis)``; a ``None`` hypothesis (no transcript: failure or
            skipped) counts as all deletions. Both sides are normalized by
            :func:`~hydralab.speech.text.normalize_for_wer` (lowercase, punctuation dropped,
            numbers and codes as spoken words).

    Returns:
        ``wer`` (word edits / reference words, ``None`` without reference words), ``errors``,
        ``words``, ``utterances``, ``untranscribed`` and ``wer_transcribed`` (over the
        utterances that have a transcript only).
    """
    errors = words = n = missing = 0
    t_errors = t_words = 0
    for ref, hyp in pairs:
        r = normalize_for_wer(ref)
        h = normalize_for_wer(hyp) if hyp is not None else []
        e = word_edit_distance(r, h)
        n += 1
        errors += e
        words += len(r)
        if hyp is None:
            missing += 1
        else:
            t_errors += e
            t_words += len(r)
    return {
        "wer": round(errors / words, 4) if words else None,
        "errors": errors,
        "words": words,
        "utterances": n,
        "untranscribed": missing,
        "wer_transcribed": round(t_errors / t_words, 4) if t_words else None,
    }


# --------------------------------------------------------------------------------------------
# Generic corpus
# --------------------------------------------------------------------------------------------

_GENERIC_SENTENCES = """\
Hi, I'm calling about my flight.
Hello, I need some help with my booking.
I'd like to change my flight.
I want to cancel my reservation.
I need to change my reservation to a different day.
Can you help me with my booking?
Can I get a refund?
I'd like a refund please.
I need to book a flight.
I want to book a ticket for next week.
Is there an earlier flight?
Is there a later flight that day?
Can I move my flight to tomorrow?
I would like to fly out on Monday instead.
What time does the flight leave?
What time does it arrive?
Is the flight on time?
My flight was delayed.
My flight was cancelled.
I missed my connection.
I'd like a window seat.
Can I get an aisle seat please?
I want to upgrade to business class.
Is there a fee for that?
How much does it cost?
How much is the change fee?
That's too expensive.
That works for me.
That sounds good.
That's fine.
Yes, please do that.
Yes, that's right.
Yes, that's correct.
No, that's not right.
No, thank you.
Sure.
Okay.
Yes.
No.
Please.
Thank you.
Thanks so much.
Thank you very much for your help.
That's all, thank you.
That's all I needed.
Goodbye.
Bye.
Have a nice day.
Can you repeat that please?
Sorry, I didn't catch that.
Could you say that again?
Hold on a second.
Let me check.
One moment please.
I'm not sure.
I don't know.
My confirmation number is R Q seven M L D.
The confirmation number is A B C one two three.
My booking reference is X Y seven four two Q.
My last name is Smith.
My first name is John.
The reservation is under the name Johnson.
Last name Williams, first name Mary.
It's spelled S M I T H.
My email address is john at example dot com.
My phone number is five five five, one two three, four five six seven.
My date of birth is May 3rd, 1985.
I'm flying from Austin to Boston.
I'm flying out of Chicago.
I'm going to New York.
The flight number is D L four one eight.
I'm on flight 2086.
I'm traveling on October 17th.
I'm leaving on the 14th and coming back on the 21st.
I need to fly next Tuesday.
I want to come back on Sunday evening.
The morning flight is better.
The afternoon flight at 3:00 PM.
The 10:40 AM flight please.
Around 6 in the evening.
I have two bags to check.
I have one carry on bag.
Can I bring my dog?
I need wheelchair assistance.
I'm traveling with my wife and two kids.
There are three passengers.
Can you send me the receipt by email?
Please send it to my email.
Can I speak to a manager?
Can I talk to a real person?
I'd like to pay with my credit card.
The card ends in four five six seven.
I'll pay the difference.
Please put it on the same card.
Can you confirm the new time?
What is my new seat number?
Is there a meal on the flight?
Is there wifi on board?
Where do I check in?
What gate is it?
My bag didn't arrive.
I lost my baggage.
I want to file a complaint.
Can I use my miles?
I have a voucher.
What is the total?
It's 240 dollars and 30 cents.
That's $87.60.
The fare is $349.
Good morning, I have a question about my trip.
Good afternoon, I'm calling to check on a reservation.
Hey there, can you help me out?
Yes, hi, I was hoping you could help me.
I just got an email saying my flight was changed.
I got a text message about a schedule change.
I received a notification that my flight is delayed.
Why was my flight cancelled?
What happened to my flight?
I need to get home today.
I have to be there by tomorrow morning.
I have a meeting I can't miss.
It's a family emergency.
My plans changed and I can't travel that day anymore.
Something came up at work.
I'm sick and can't fly.
Can I push it back a day?
Can I move it up to an earlier date?
Could you put me on the next available flight?
Is there anything leaving tonight?
Are there any seats left on that flight?
Is that a direct flight?
Does it have a layover?
How long is the layover?
I'd prefer a nonstop flight.
I don't want to connect through another city.
Which airport does it land at?
What terminal does it leave from?
When should I get to the airport?
How early do I need to check in?
When does boarding start?
Can I check in online?
I can't find my boarding pass.
Could you email me my boarding pass?
I never got a confirmation email.
Can you resend the itinerary?
My name is spelled wrong on the ticket.
There's a typo in my name.
Can you correct the spelling of my name?
I need to add a passenger to my booking.
I need to remove someone from the reservation.
My husband is traveling with me.
My daughter is flying alone.
She's an unaccompanied minor.
I'm traveling with a baby.
Do I need to buy a seat for my child?
Can I bring a stroller?
Can I bring my cat in the cabin?
I'm bringing a service animal.
I need a seat with extra legroom.
Can we sit together?
We'd like to sit next to each other.
Can I change my seat?
I'd rather have a seat near the front.
Is there an exit row available?
The middle seat is fine.
Any seat is fine.
How much does it cost to check a bag?
Is the first checked bag free?
What is the weight limit?
My suitcase is a little overweight.
My luggage never showed up.
My bag was damaged.
Something is missing from my bag.
Where is my luggage now?
I'd like to report a lost bag.
Can you deliver it to my hotel?
Can I get a refund instead of a credit?
I want my money back.
How long does the refund take?
When will I see the refund on my card?
I was charged twice.
There's a charge I don't recognize.
Can you waive the fee?
Is there any way to avoid the change fee?
I'm a frequent flyer member.
My member number is seven two four nine one.
I'd like to use my points.
How many miles do I have?
Can I get credit for this flight?
I have a travel credit from a cancelled trip.
Can I apply my credit to a new booking?
I'd like to buy travel insurance.
Please keep the same return flight.
Just change the outbound flight.
Only the return flight needs to change.
Leave everything else the same.
Can you hold the reservation for me?
Can you check if there is something cheaper?
What's the cheapest option?
What other options do I have?
Give me a minute to think about it.
Let me ask my wife.
Let me look at my calendar.
Hang on, let me find my confirmation email.
Okay, I found it.
I have it right here.
It should be under my name.
The booking code is on my receipt.
I think it starts with a K.
It ends in a nine.
Sorry, that was an M, not an N.
B as in boy.
D as in dog.
F as in Frank.
P as in Peter.
S as in Sam.
T as in Tom.
Let me spell that for you.
Could you spell that back to me?
Can you read that back?
Did you get that?
Is that everything?
Is there anything else I need to do?
Do I need to do anything else?
What happens next?
Will I get a confirmation?
How will I know it went through?
That's perfect.
Great, thank you so much.
Awesome, thanks.
Perfect, that's exactly what I needed.
Alright, sounds good.
Okay, go ahead.
Yes, go ahead and book it.
Yes, please cancel it.
No, don't cancel it yet.
No, I'd like to keep it.
Actually, never mind.
Wait, let me think.
Hmm, I'm not sure about that.
That doesn't work for me.
That's not what I asked for.
I already told you that.
I've been on hold for an hour.
This is really frustrating.
I'm not happy with this.
I'd like to speak with a supervisor.
Can you transfer me?
Can someone call me back?
What's the best number to reach you?
You can reach me at this number.
My phone number is the same.
My email has changed.
My new email address is mary dot jones at mail dot com.
I live in Texas.
My address is one two three Main Street.
My zip code is seven eight seven zero one.
My birthday is January fifth.
I was born in nineteen eighty.
It was booked through a travel agent.
I booked it on your website.
I booked it last week.
The ticket was a gift.
I'm calling on behalf of my mother.
I'm calling for my boss.
The reservation is for two adults.
It's for three people.
It's a round trip ticket.
It's one way.
I'm flying economy.
I'm in first class.
I paid for premium economy.
Was it really that much?
That's a lot of money.
I can't afford that.
Is the price the same?
Does the fare include bags?
Are taxes included?
Can I pay with a different card?
I'll use my debit card.
Do you accept PayPal?
The card number is four one one one, one one one one.
The expiration date is twelve twenty eight.
The security code is three four five.
My account number is five five zero one.
I'd like to update my account.
I forgot my password.
I can't log in to my account.
The app isn't working.
The website gave me an error.
I'd like to check the status of my order.
When will my order arrive?
Can I change the delivery address?
I want to return an item.
I'd like to make a reservation for Friday night.
Do you have any rooms available?
I need a rental car at the airport.
Can I pick it up at noon?
I'll drop it off on Sunday.
Today.
Tomorrow.
Tonight.
Next week.
This weekend.
In the morning.
In the afternoon.
In the evening.
Early morning.
Late at night.
Around noon.
After five.
Before ten in the morning.
Sometime next month.
The day after tomorrow.
A week from today.
The first week of June.
At the end of the month.
At a quarter past three.
At half past eight.
At seven thirty.
At eleven fifteen.
Yes, exactly.
Right.
Correct.
Exactly.
Of course.
Absolutely.
Definitely.
Sounds great.
No problem.
Not really.
Not at the moment.
Maybe.
I guess so.
I think so.
I don't think so.
Nope.
Yep.
Uh huh.
Got it.
I see.
I understand.
Makes sense.
Hello?
Are you there?
Can you hear me?
I can't hear you very well.
You're breaking up.
Sorry, go ahead.
You too.
Take care.
Bye bye.
Have a good one.
"""

_SURNAMES = [  # common US (census) surnames, then the most common of a few other cultures
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor",
    "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez",
    "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright", "Scott",
    "Torres", "Nguyen", "Hill", "Flores", "Green", "Adams", "Nelson", "Baker", "Hall", "Rivera",
    "Campbell", "Mitchell", "Carter", "Roberts", "Gomez", "Phillips", "Evans", "Turner", "Diaz",
    "Parker", "Cruz", "Edwards", "Collins", "Reyes", "Stewart", "Morris", "Morales", "Murphy",
    "Cook", "Rogers", "Gutierrez", "Ortiz", "Morgan", "Cooper", "Peterson", "Bailey", "Reed",
    "Kelly", "Howard", "Ramos", "Kim", "Cox", "Ward", "Richardson", "Watson", "Brooks", "Chavez",
    "Wood", "James", "Bennett", "Gray", "Mendoza", "Ruiz", "Hughes", "Price", "Alvarez",
    "Castillo", "Sanders", "Patel", "Myers", "Long", "Ross", "Foster", "Jimenez", "Powell",
    "Jenkins", "Perry", "Russell", "Sullivan", "Bell", "Coleman", "Butler", "Henderson", "Barnes",
    "Gonzales", "Fisher", "Vasquez", "Simmons", "Romero", "Jordan", "Patterson", "Alexander",
    "Hamilton", "Graham", "Reynolds", "Griffin", "Wallace", "Moreno", "West", "Cole", "Hayes",
    "Bryant", "Herrera", "Gibson", "Ellis", "Tran", "Medina", "Aguilar", "Stevens", "Murray",
    "Ford", "Castro", "Marshall", "Owens", "Harrison", "Fernandez", "McDonald", "Woods",
    "Washington", "Kennedy", "Wells", "Vargas", "Henry", "Chen", "Freeman", "Webb", "Tucker",
    "Guzman", "Burns", "Crawford", "Olson", "Simpson", "Porter", "Hunter", "Gordon", "Mendez",
    "Silva", "Shaw", "Snyder", "Mason", "Dixon", "Munoz", "Hunt", "Hicks", "Holmes", "Palmer",
    "Wagner", "Black", "Robertson", "Boyd", "Rose", "Stone", "Salazar", "Fox", "Warren", "Mills",
    "Meyer", "Rice", "Schmidt", "Garza", "Daniels", "Ferguson", "Nichols", "Stephens", "Soto",
    "Weaver", "Ryan", "Gardner", "Payne", "Grant", "Dunn", "Kelley", "Spencer", "Hawkins",
    "Arnold", "Pierce", "Vazquez", "Hansen", "Peters", "Santos", "Hart", "Bradley", "Knight",
    "Elliott", "Cunningham", "Duncan", "Armstrong", "Hudson", "Carroll", "Lane", "Riley",
    "Andrews", "Alvarado", "Ray", "Delgado", "Berry", "Perkins", "Hoffman", "Johnston", "Matthews",
    "Pena", "Richards", "Contreras", "Willis", "Carpenter", "Lawrence", "Sandoval", "Sato",
    "Suzuki", "Takahashi", "Tanaka", "Watanabe", "Ito", "Yamamoto", "Nakamura", "Kobayashi",
    "Kato", "Wang", "Li", "Zhang", "Liu", "Yang", "Huang", "Zhao", "Wu", "Zhou", "Singh", "Kumar",
    "Shah", "Khan", "Ali", "Muller", "Schneider", "Rossi", "Russo", "Pereira", "Dubois", "Bernard",
    "Novak", "Kowalski", "Ivanov",
]  # fmt: skip
_FIRST_NAMES = [
    "John",
    "Mary",
    "James",
    "Patricia",
    "Robert",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Susan",
    "Richard",
    "Sarah",
    "Joseph",
    "Karen",
    "Thomas",
    "Lisa",
    "Daniel",
    "Nancy",
    "Emily",
    "Anna",
    "Maria",
    "Peter",
    "Paul",
    "Mark",
]
_CITIES = [
    "Austin", "Boston", "Chicago", "Denver", "Dallas", "Houston", "Miami", "Atlanta",
    "Seattle", "Phoenix", "Portland", "Orlando", "Detroit", "Philadelphia", "Las Vegas",
    "Los Angeles", "San Francisco", "San Diego", "New York", "Washington", "London", "Paris",
    "Toronto",
]  # fmt: skip
_WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_MONTH_NAMES = list(MONTHS)
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _generic_lines() -> list[str]:
    """The built-in generic call-center corpus (deterministic)."""
    rng = random.Random(20260325)
    lines = _GENERIC_SENTENCES.splitlines()
    lines += [cardinal(n) for n in range(1, 100)]
    lines += [f"{cardinal(n)} hundred" for n in range(1, 10)]
    lines += [ordinal(n) for n in range(1, 32)]
    lines += [f"the {ordinal(n)}" for n in range(1, 32)]
    for i, month in enumerate(_MONTH_NAMES):
        days = rng.sample(range(1, 32), 4)
        lines += [f"{month} {ordinal(d)}" for d in days]
        lines.append(f"on {month} {ordinal((i * 7) % 31 + 1)}")
    lines += [f"on {day}" for day in _WEEKDAYS]
    lines += [f"{day} morning" for day in _WEEKDAYS[:5]]
    lines += [
        f"{h} {m} a m".strip()
        for h in ("six", "seven", "eight", "nine", "ten")
        for m in ("", "thirty")
    ]
    lines += [
        f"{h} {m} p m".strip()
        for h in ("one", "two", "three", "four", "five")
        for m in ("", "fifteen", "forty-five")
    ]
    lines += [f"{city}" for city in _CITIES]
    lines += [f"from {a} to {b}" for a, b in zip(_CITIES, _CITIES[3:] + _CITIES[:3], strict=True)]
    carriers = ("my last name is {}", "last name {}", "it's under {}", "the last name is {}")
    lines += [carriers[i % len(carriers)].format(name) for i, name in enumerate(_SURNAMES)]
    lines += [f"my name is {f} {s}" for f, s in zip(_FIRST_NAMES, _SURNAMES, strict=False)]
    lines += [" ".join(_LETTERS), " ".join(_DIGIT_WORDS)]
    alnum = list(_LETTERS) * 2 + _DIGIT_WORDS
    for _ in range(60):  # booking codes / flight numbers spelled out
        n = rng.choice((2, 3, 5, 6, 6, 6))
        lines.append(" ".join(rng.choice(alnum) for _ in range(n)))
    code_carriers = (
        "{c}",
        "it's {c}",
        "{c} last name {s}",
        "it's {c} last name {s}",
        "confirmation number {c}",
        "my confirmation number is {c}",
        "the code is {c}",
        "confirmation code {c} last name {s}",
    )
    for i in range(160):  # six-character booking codes, mostly letters, in caller phrasing
        code = [rng.choice(_LETTERS) for _ in range(6)]
        for _ in range(rng.choice((0, 1, 1, 2))):
            code[rng.randrange(6)] = rng.choice(_DIGIT_WORDS)
        carrier = code_carriers[i % len(code_carriers)]
        lines.append(carrier.format(c=" ".join(code), s=rng.choice(_SURNAMES)))
    for _ in range(40):  # amounts of money
        lines.append(f"{cardinal(rng.randrange(20, 2000))} dollars")
    for _ in range(20):  # digit strings (card endings, phone numbers)
        lines.append(" ".join(rng.choice(_DIGIT_WORDS) for _ in range(rng.choice((3, 4, 4, 7)))))
    lines += [
        "confirmation number",
        "the confirmation number is",
        "booking reference",
        "last name",
        "first name",
        "yes",
        "yeah",
        "no",
        "that's right",
        "that is correct",
        "thank you",
        "goodbye",
        "one way",
        "round trip",
        "economy",
        "business class",
        "first class",
    ]
    return lines


GENERIC_CORPUS: tuple[str, ...] = tuple(_generic_lines())
"""Generic English call-center lines mixed into every local LM (written form)."""


# --------------------------------------------------------------------------------------------
# Dictionary / LM construction
# --------------------------------------------------------------------------------------------

_DICT_LOCK = threading.Lock()
_CMUDICT: dict[str, list[str]] | None = None
_SPLIT_RE = re.compile(r"(?<=[.!?;:])\s+|\n+")


def _model_dir() -> str:
    """The bundled en-us model directory (acoustic model ``en-us/`` plus ``cmudict``)."""
    from pocketsphinx import get_model_path

    return os.path.join(str(get_model_path()), "en-us")


def _cmudict() -> dict[str, list[str]]:
    """word -> list of phone strings from the bundled CMU dictionary (cached per process)."""
    global _CMUDICT
    with _DICT_LOCK:
        if _CMUDICT is None:
            entries: dict[str, list[str]] = {}
            path = os.path.join(_model_dir(), "cmudict-en-us.dict")
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    word, _, phones = line.strip().partition(" ")
                    if not phones:
                        continue
                    base = word.split("(", 1)[0]
                    entries.setdefault(base, []).append(phones.strip())
            _CMUDICT = entries
        return _CMUDICT


def _split_identifiers(text: str) -> str:
    text = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", text)  # camelCase
    return re.sub(r"[_/]+", " ", text)


def lm_sentences(text: str, vocab: dict[str, list[str]]) -> list[list[str]]:
    """Split text into LM training sentences of in-dictionary words.

    Sentences are split at ``. ! ? ; :`` and newlines, normalized like WER references (numbers
    and codes to words), and cut into fragments at out-of-dictionary words so no false n-gram
    bridges over a dropped word.
    """
    out: list[list[str]] = []
    for chunk in _SPLIT_RE.split(_split_identifiers(text)):
        frag: list[str] = []
        for tok in normalize_for_wer(chunk):
            if tok in vocab:
                frag.append(tok)
            elif frag:
                out.append(frag)
                frag = []
        if frag:
            out.append(frag)
    return out


_BACKGROUND_MAX = 20000
_BACKGROUND: list[str] | None = None


def _background_vocab() -> list[str]:
    """Dictionary words ranked by unigram probability in the bundled general ``en-us.lm.bin``.

    Computed once per process (~0.3 s); the top entries are common conversational English.
    """
    global _BACKGROUND
    vocab = _cmudict()
    with _DICT_LOCK:
        if _BACKGROUND is None:
            from pocketsphinx import NGramModel

            general = NGramModel.readfile(os.path.join(_model_dir(), "en-us.lm.bin"))
            scored = [(general.prob([w]), w) for w in vocab if w.replace("'", "").isalpha()]
            scored.sort(key=lambda t: (-t[0], t[1]))
            _BACKGROUND = [w for _, w in scored[:_BACKGROUND_MAX]]
        return _BACKGROUND


def _build_decoder(
    domain_text: str,
    *,
    include_generic: bool,
    background_words: int,
    background_count: float,
    decoder_options: Mapping[str, Any],
) -> Any:
    from pocketsphinx import Decoder

    # importlib: pocketsphinx.lm has no stubs (only "pocketsphinx" is in the mypy overrides)
    arpa_bo_lm: Any = importlib.import_module("pocketsphinx.lm").ArpaBoLM

    vocab = _cmudict()
    sentences = lm_sentences(domain_text, vocab)
    if include_generic:
        sentences += lm_sentences("\n".join(GENERIC_CORPUS), vocab)
    if not sentences:
        raise ValueError("empty LM: no in-dictionary words in domain_text")
    corpus = "\n".join(" ".join(s) for s in sentences)
    lm = arpa_bo_lm(text=corpus, add_start=True)
    if background_words > 0:
        # Common English words as unigrams only, so callers are not limited to the corpus.
        for w in _background_vocab()[:background_words]:
            if w not in lm.grams_1:
                lm.grams_1[w] = background_count
    lm.compute()
    words = sorted(w for w in lm.grams_1 if w not in ("<s>", "</s>"))
    with tempfile.TemporaryDirectory(prefix="hydralab-lm-") as tmp:
        lm_path = os.path.join(tmp, "domain.arpa")
        dict_path = os.path.join(tmp, "domain.dict")
        with open(lm_path, "w", encoding="utf-8") as fh:
            lm.write(fh)
        with open(dict_path, "w", encoding="utf-8") as fh:
            for w in words:
                for i, phones in enumerate(vocab[w]):
                    fh.write(f"{w if i == 0 else f'{w}({i + 1})'} {phones}\n")
        kwargs: dict[str, Any] = {
            "hmm": os.path.join(_model_dir(), "en-us"),
            "lm": lm_path,
            "dict": dict_path,
            "samprate": DECODE_RATE_HZ,
            "loglevel": "FATAL",
        }
        kwargs.update(decoder_options)
        decoder = Decoder(**kwargs)
    # The acoustic model's feat.params override feature options given to Decoder() (upperf,
    # remove_noise, ...): set those again and rebuild the front end, so none is silently lost.
    changed = False
    for key, value in decoder_options.items():
        if decoder.config[key] != value:
            decoder.config[key] = value
            changed = True
    if changed:
        decoder.reinit_feat()
    return decoder


# --------------------------------------------------------------------------------------------
# LocalTranscriber
# --------------------------------------------------------------------------------------------


class LocalTranscriber:
    """Offline transcription with pocketsphinx and a run-time domain LM.

    The decoder is built lazily on the first :meth:`transcribe` (0.25-0.35 s, of which
    ~0.15 s parses the CMU dictionary once per process), or eagerly with ``await start()``.
    Decoding runs in a worker thread; one decoder per transcriber, guarded by a lock, so
    concurrent calls are serialized. With ``isolate=True`` (what :func:`make_transcriber` and
    the runner use) the decoder lives in its own process instead: pocketsphinx holds the GIL
    while it decodes, and in-process decoding would stall a live call's event loop.

    Args:
        domain_text: Domain vocabulary and phrasing (agent instructions, tool names, generic
            domain phrases). Never put the exact lines to be recognized here.
        include_generic_corpus: Mix in :data:`GENERIC_CORPUS`.
        background_words: Add this many of the most frequent English words (ranked by the
            bundled general LM) as unigrams, so words outside the corpus can still be
            recognized. 0 disables.
        background_count: Pseudo-count of each background unigram. Off by default: on
            typical call-center lines it added as many confusions as it removed.
        dither_dbfs: RMS of Gaussian noise added before decoding (-50 dBFS is sigma ~0.003);
            pocketsphinx collapses on synthetic speech with exact digital zeros.
            ``None`` disables it.
        seed: Seed of the dither noise (re-seeded per call, so results are deterministic).
        min_duration_ms: Shorter utterances return ``error="too_short"`` without decoding.
        min_voiced_frames: Utterances with fewer voiced 20 ms frames (webrtcvad mode 3) return
            ``error="no_speech"`` without decoding.
        min_voiced_dbfs: A voiced frame counts only above this RMS.
        decoder_options: pocketsphinx ``Decoder`` options, merged over
            :data:`DEFAULT_DECODER_OPTIONS` (language weight 9.5: measured best of 5-11 on
            the airline records, see ``benchmarks/stt_wer.py``).
    """

    def __init__(
        self,
        domain_text: str = "",
        *,
        include_generic_corpus: bool = True,
        background_words: int = 0,
        background_count: float = 0.25,
        dither_dbfs: float | None = -50.0,
        seed: int = 0,
        min_duration_ms: float = MIN_DURATION_MS,
        min_voiced_frames: int = MIN_VOICED_FRAMES,
        min_voiced_dbfs: float = MIN_VOICED_DBFS,
        decoder_options: Mapping[str, Any] | None = None,
        isolate: bool = False,
    ) -> None:
        self.name = "local"
        self.isolate = isolate
        self._init_kwargs: dict[str, Any] = {
            "domain_text": domain_text,
            "include_generic_corpus": include_generic_corpus,
            "background_words": background_words,
            "background_count": background_count,
            "dither_dbfs": dither_dbfs,
            "seed": seed,
            "min_duration_ms": min_duration_ms,
            "min_voiced_frames": min_voiced_frames,
            "min_voiced_dbfs": min_voiced_dbfs,
            "decoder_options": decoder_options,
        }
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self.domain_text = domain_text
        self.include_generic_corpus = include_generic_corpus
        self.background_words = background_words
        self.background_count = background_count
        self.dither_dbfs = dither_dbfs
        self.seed = seed
        self.min_duration_ms = min_duration_ms
        self.min_voiced_frames = min_voiced_frames
        self.min_voiced_dbfs = min_voiced_dbfs
        self.decoder_options: dict[str, Any] = {
            **DEFAULT_DECODER_OPTIONS,
            **(decoder_options or {}),
        }
        self.build_ms: float | None = None
        self._decoder: Any = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def started(self) -> bool:
        """Whether the decoder has been built."""
        return self._decoder is not None

    async def start(self) -> None:
        """Build the LM and decoder now (in a worker thread, or in the worker process when
        ``isolate``). Idempotent; may raise."""
        if self.isolate:
            await asyncio.get_running_loop().run_in_executor(self._worker_pool(), _worker_ping)
            return
        await asyncio.to_thread(self._ensure_decoder)

    def _worker_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        """One decoder process per transcriber. pocketsphinx holds the GIL while it decodes
        (60-390 ms an utterance), which would freeze the call's event loop and skew every
        timestamp taken meanwhile; a separate process keeps the loop free."""
        if self._closed:
            raise RuntimeError(ERROR_CLOSED)
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_init,
                initargs=(self._init_kwargs,),
            )
        return self._pool

    def _ensure_decoder(self) -> Any:
        with self._lock:
            if self._closed:
                raise RuntimeError(ERROR_CLOSED)
            if self._decoder is None:
                t0 = time.perf_counter()
                self._decoder = _build_decoder(
                    self.domain_text,
                    include_generic=self.include_generic_corpus,
                    background_words=self.background_words,
                    background_count=self.background_count,
                    decoder_options=self.decoder_options,
                )
                self.build_ms = 1000.0 * (time.perf_counter() - t0)
                if self._closed:  # aclose() raced with the build
                    self._decoder = None
                    raise RuntimeError(ERROR_CLOSED)
            return self._decoder

    def _prepare(self, pcm: np.ndarray, sample_rate_hz: int) -> np.ndarray:
        return resample_int16(as_mono_int16(pcm), sample_rate_hz, DECODE_RATE_HZ)

    def _dither(self, x: np.ndarray) -> np.ndarray:
        if self.dither_dbfs is None:
            return x
        sigma = 32768.0 * 10.0 ** (self.dither_dbfs / 20.0)
        noise = np.random.default_rng(self.seed).normal(0.0, sigma, size=len(x))
        return np.clip(np.round(x + noise), -32768, 32767).astype(np.int16)

    def _decode_sync(self, x: np.ndarray) -> str:
        decoder = self._ensure_decoder()
        data = self._dither(x).tobytes()
        with self._lock:
            decoder.start_utt()
            try:
                decoder.process_raw(data, full_utt=True)
            finally:
                decoder.end_utt()
            hyp = decoder.hyp()
        return "" if hyp is None else str(hyp.hypstr).strip()

    def _transcribe_sync(self, pcm: np.ndarray, sample_rate_hz: int) -> tuple[str, str | None]:
        x = self._prepare(pcm, sample_rate_hz)
        if voiced_frames(x, min_dbfs=self.min_voiced_dbfs) < self.min_voiced_frames:
            return "", ERROR_NO_SPEECH
        text = self._decode_sync(x)
        return (text, None) if text else ("", ERROR_EMPTY)

    async def transcribe(self, pcm: np.ndarray, *, sample_rate_hz: int) -> Transcript:
        """Transcribe one utterance. Never raises (except on cancellation); see ``Transcript``."""
        t0 = time.perf_counter()
        audio_ms = 0.0

        def result(text: str, error: str | None) -> Transcript:
            return Transcript(
                text=text,
                ok=error is None,
                error=None if error is None else redact(error),  # as every transcriber's
                provider=self.name,
                duration_ms=1000.0 * (time.perf_counter() - t0),
                audio_ms=audio_ms,
            )

        try:
            if self._closed:
                return result("", ERROR_CLOSED)
            if sample_rate_hz <= 0:
                raise ValueError(f"sample_rate_hz must be positive, got {sample_rate_hz}")
            audio_ms = 1000.0 * len(pcm) / sample_rate_hz
            if audio_ms < self.min_duration_ms:
                return result("", ERROR_TOO_SHORT)
            if self.isolate:
                text, error = await asyncio.get_running_loop().run_in_executor(
                    self._worker_pool(), _worker_transcribe, np.asarray(pcm), sample_rate_hz
                )
            else:
                text, error = await asyncio.to_thread(self._transcribe_sync, pcm, sample_rate_hz)
            return result(text, error)
        except Exception as exc:
            return result("", f"{type(exc).__name__}: {exc}")

    async def aclose(self) -> None:
        """Drop the decoder (and stop its process); later calls return ``error="closed"``."""
        self._closed = True
        self._decoder = None
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, True, cancel_futures=True)


_WORKER: LocalTranscriber | None = None


def _worker_init(kwargs: dict[str, Any]) -> None:
    """In the decoder process: build the transcriber (and its decoder) once, and exit when the
    process that started it is gone (killed with SIGKILL, it cannot say so: the executor's
    queue would keep this process, and multiprocessing's resource tracker, alive forever)."""
    global _WORKER
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    _WORKER = LocalTranscriber(**kwargs)
    _WORKER._ensure_decoder()


def _exit_with_parent(parent_pid: int, *, every_s: float = 1.0) -> None:
    while True:
        time.sleep(every_s)
        if os.getppid() != parent_pid:  # re-parented: the parent died
            os._exit(0)


def _worker_ping() -> bool:
    return _WORKER is not None


def _worker_transcribe(pcm: np.ndarray, sample_rate_hz: int) -> tuple[str, str | None]:
    if _WORKER is None:  # pragma: no cover - the initializer always runs first
        raise RuntimeError("decoder process not initialised")
    return _WORKER._transcribe_sync(pcm, sample_rate_hz)


def make_transcriber(
    provider: str | SttConfig = "local",
    *,
    domain_text: str = "",
    client: Any = None,
    **kwargs: Any,
) -> Transcriber:
    """Create a transcriber from a provider name or an :class:`SttConfig`.

    Args:
        provider: ``"local"``, ``"smallest"``, ``"openai"``, ``"deepgram"`` or a config.
        domain_text: LM text of the local provider (ignored by HTTP providers).
        client: An ``httpx.AsyncClient`` for HTTP providers to use instead of their own (the
            caller then closes it).
        **kwargs: With a name: :class:`SttConfig` fields for HTTP providers, or
            :class:`LocalTranscriber` arguments for ``local``.

    Raises:
        ValueError: Unknown provider, unsupported language for the provider, or no API key
            (:class:`~hydralab.speech.providers.SttConfigError`, a ``ValueError``).
    """
    if isinstance(provider, SttConfig):
        if kwargs:
            raise TypeError("pass either an SttConfig or keyword options, not both")
        cfg = provider
    elif provider == "local":
        return LocalTranscriber(domain_text, **{"isolate": True, **kwargs})
    else:
        cfg = SttConfig(provider=provider, **kwargs)  # validates the name
    if cfg.provider == "local":
        return LocalTranscriber(
            domain_text,
            min_duration_ms=cfg.min_duration_ms,
            min_voiced_frames=cfg.min_voiced_frames,
            isolate=True,
        )
    return make_http_transcriber(cfg, client=client)
