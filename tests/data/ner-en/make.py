"""Build tests/data/ner-en/{train,validation,test}.conll: English news-style sentences, IOB2.

Templates are filled with entity names; test (the held-out part) uses names and templates
that train/validation never contain, so a model must generalise from context and from what
the pretrained encoder knows, not memorise names."""
import random
from pathlib import Path

TEMPLATES = [
    "{PER} , the chief executive of {ORG} , said on Monday that the company would open an office in {LOC} .",
    "{PER} scored twice as {ORG} beat {ORG} 3-1 in {LOC} on Saturday .",
    "Shares of {ORG} fell 4 percent in {LOC} after {PER} resigned .",
    "The {MISC} government said {PER} would visit {LOC} next week .",
    "{PER} was born in {LOC} and studied economics at {ORG} .",
    "Police in {LOC} arrested two men on Tuesday , {ORG} reported .",
    "{ORG} hired {PER} , a former {ORG} analyst , to run its business in {LOC} .",
    "Talks between {LOC} and {LOC} ended without an agreement , officials said .",
    "{PER} won the final after beating {PER} in straight sets .",
    "A spokesman for {ORG} declined to comment on the report .",
    "{PER} told reporters in {LOC} that inflation was falling .",
    "Thousands of {MISC} fans travelled to {LOC} to watch the match .",
    "{ORG} said its profit rose to 2.1 billion dollars in the third quarter .",
    "{PER} and {PER} met in {LOC} to discuss trade .",
    "The {MISC} striker joined {ORG} from {ORG} for 20 million euros .",
    "Floods in {LOC} forced thousands of people from their homes , {ORG} said .",
    "{PER} , who leads the {MISC} delegation , arrived in {LOC} late on Wednesday .",
    "Analysts at {ORG} expect the central bank in {LOC} to cut rates .",
]
HELD_OUT_TEMPLATES = [
    "{PER} said {ORG} had no plans to leave {LOC} .",
    "In {LOC} , {PER} opened a new factory for {ORG} on Friday .",
    "The {MISC} minister met {PER} in {LOC} .",
    "{ORG} and {ORG} agreed to merge , according to {PER} .",
]
NAMES = {
    "PER": [["Angela", "Merkel"], ["John", "Smith"], ["Maria", "Garcia"], ["David", "Beckham"], ["Yuki", "Tanaka"],
            ["Pierre", "Dubois"], ["Ahmed", "Hassan"], ["Sarah", "Johnson"], ["Boris", "Ivanov"], ["Emma", "Wilson"],
            ["Carlos", "Silva"], ["Li", "Wei"], ["Thomas", "Muller"], ["Anna", "Kowalski"], ["Clinton"], ["Yeltsin"]],
    "ORG": [["Reuters"], ["Deutsche", "Bank"], ["Manchester", "United"], ["Toyota"], ["Goldman", "Sachs"], ["Oxford", "University"],
            ["Siemens"], ["Real", "Madrid"], ["the", "United", "Nations"], ["Microsoft"], ["Barclays"], ["Ajax"]],
    "LOC": [["London"], ["New", "York"], ["Paris"], ["Tokyo"], ["Berlin"], ["Madrid"], ["Moscow"], ["Cairo"],
            ["Sydney"], ["Brazil"], ["Germany"], ["Texas"], ["Hong", "Kong"], ["Lagos"]],
    "MISC": [["German"], ["French"], ["Brazilian"], ["Japanese"], ["Italian"], ["Russian"], ["Dutch"], ["Spanish"]],
}
HELD_OUT_NAMES = {
    "PER": [["Olivia", "Brown"], ["Kenji", "Sato"], ["Fatima", "Khan"], ["Lars", "Nielsen"], ["Lucia", "Rossi"], ["Mandela"]],
    "ORG": [["Nestle"], ["Bank", "of", "England"], ["Juventus"], ["Samsung"], ["Harvard", "University"]],
    "LOC": [["Rome"], ["Chicago"], ["Nairobi"], ["Seoul"], ["Canada"], ["Buenos", "Aires"]],
    "MISC": [["Swedish"], ["Canadian"], ["Korean"], ["Mexican"]],
}


def fill(rng, template, names):
    words, tags = [], []
    for part in template.split():
        if part.startswith("{") and part.endswith("}"):
            kind = part[1:-1]
            entity = rng.choice(names[kind])
            # 'the' in 'the United Nations' stays outside the entity, as in CoNLL-2003
            lead = [w for w in entity if w == "the"]
            body = [w for w in entity if w != "the"]
            words += lead + body
            tags += ["O"] * len(lead) + [f"B-{kind}"] + [f"I-{kind}"] * (len(body) - 1)
        else:
            words.append(part)
            tags.append("O")
    return words, tags


def write(path, sentences):
    with open(path, "w") as f:
        f.write("-DOCSTART- -X- -X- O\n\n")
        for words, tags in sentences:
            f.write("".join(f"{w} {t}\n" for w, t in zip(words, tags)) + "\n")


rng = random.Random(2026)
out = Path("tests/data/ner-en")
out.mkdir(parents=True, exist_ok=True)
seen = [fill(rng, rng.choice(TEMPLATES), NAMES) for _ in range(440)]
write(out / "train.conll", seen[:360])
write(out / "validation.conll", seen[360:])
held = [fill(rng, rng.choice(TEMPLATES + HELD_OUT_TEMPLATES), HELD_OUT_NAMES) for _ in range(120)]
write(out / "test.conll", held)
