"""Regenerate src/tunelab/resources/general_qa.jsonl: the general-knowledge probe set that
`tunelab eval` uses to measure catastrophic forgetting.

Short questions with one short reference answer each, across geography, science, arithmetic,
language, time and everyday knowledge. An answer counts as correct when the normalised
reference appears in the model's normalised answer.

    python scripts/make_probe_data.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Portugal": "Lisbon",
    "Japan": "Tokyo", "China": "Beijing", "India": "New Delhi", "Russia": "Moscow", "Canada": "Ottawa",
    "Mexico": "Mexico City", "Egypt": "Cairo", "Kenya": "Nairobi", "Greece": "Athens", "Norway": "Oslo",
    "Sweden": "Stockholm", "Finland": "Helsinki", "Denmark": "Copenhagen", "Poland": "Warsaw",
    "Austria": "Vienna", "Ireland": "Dublin", "Belgium": "Brussels", "Netherlands": "Amsterdam",
    "Argentina": "Buenos Aires", "Peru": "Lima", "Chile": "Santiago", "Colombia": "Bogota", "Cuba": "Havana",
    "Thailand": "Bangkok", "Vietnam": "Hanoi", "South Korea": "Seoul", "Indonesia": "Jakarta",
    "Philippines": "Manila", "Turkey": "Ankara", "Iran": "Tehran", "Iraq": "Baghdad", "Israel": "Jerusalem",
    "Ukraine": "Kyiv", "Hungary": "Budapest", "Czech Republic": "Prague", "Switzerland": "Bern",
    "Australia": "Canberra", "New Zealand": "Wellington", "Nigeria": "Abuja", "Ghana": "Accra",
    "Morocco": "Rabat", "Ethiopia": "Addis Ababa", "Saudi Arabia": "Riyadh", "Pakistan": "Islamabad",
    "United Kingdom": "London",
}
SYMBOLS = {
    "oxygen": "O", "hydrogen": "H", "carbon": "C", "nitrogen": "N", "gold": "Au", "silver": "Ag",
    "iron": "Fe", "sodium": "Na", "potassium": "K", "calcium": "Ca", "helium": "He", "neon": "Ne",
    "copper": "Cu", "zinc": "Zn", "lead": "Pb", "tin": "Sn", "mercury": "Hg", "sulfur": "S",
    "chlorine": "Cl", "magnesium": "Mg", "aluminium": "Al", "silicon": "Si", "uranium": "U", "iodine": "I",
}
OPPOSITES = {
    "hot": "cold", "up": "down", "big": "small", "fast": "slow", "early": "late", "happy": "sad",
    "light": "dark", "open": "closed", "full": "empty", "strong": "weak", "old": "new", "high": "low",
    "wet": "dry", "hard": "soft", "rich": "poor", "loud": "quiet", "thick": "thin", "heavy": "light",
    "first": "last", "inside": "outside", "buy": "sell", "win": "lose", "push": "pull", "day": "night",
    "north": "south", "east": "west", "true": "false", "begin": "end", "left": "right", "always": "never",
}
YOUNG = {"dog": "puppy", "cat": "kitten", "cow": "calf", "horse": "foal", "sheep": "lamb", "goat": "kid",
         "frog": "tadpole", "duck": "duckling", "goose": "gosling", "kangaroo": "joey", "bear": "cub",
         "lion": "cub", "swan": "cygnet", "deer": "fawn", "pig": "piglet", "owl": "owlet"}
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
FACTS = [
    ("How many days are in a week?", "7"), ("How many hours are in a day?", "24"),
    ("How many minutes are in an hour?", "60"), ("How many seconds are in a minute?", "60"),
    ("How many months are in a year?", "12"), ("How many days are in a leap year?", "366"),
    ("How many legs does a spider have?", "8"), ("How many legs does an insect have?", "6"),
    ("How many continents are there?", "7"), ("How many sides does a triangle have?", "3"),
    ("How many sides does a hexagon have?", "6"), ("How many centimetres are in a metre?", "100"),
    ("How many grams are in a kilogram?", "1000"), ("At what temperature in Celsius does water freeze?", "0"),
    ("At what temperature in Celsius does water boil at sea level?", "100"),
    ("What is the largest planet in the solar system?", "Jupiter"),
    ("Which planet is closest to the Sun?", "Mercury"), ("Which planet is known as the Red Planet?", "Mars"),
    ("What is the third planet from the Sun?", "Earth"), ("Which planet has the most famous rings?", "Saturn"),
    ("What gas do plants take in from the air to make food?", "carbon dioxide"),
    ("What gas do humans need to breathe to live?", "oxygen"), ("What is frozen water called?", "ice"),
    ("What is the largest ocean on Earth?", "Pacific"), ("What is the longest river in Africa?", "Nile"),
    ("What is the tallest mountain on Earth?", "Everest"), ("What is the largest desert in Africa?", "Sahara"),
    ("Which organ pumps blood through the body?", "heart"), ("Which organ do we use to think?", "brain"),
    ("What do bees make?", "honey"), ("What color is the sky on a clear day?", "blue"),
    ("What color do you get by mixing blue and yellow?", "green"),
    ("What color do you get by mixing red and white?", "pink"),
    ("What color do you get by mixing red and yellow?", "orange"),
    ("What is the chemical formula of water?", "H2O"), ("What is the closest star to Earth?", "Sun"),
    ("What natural satellite orbits the Earth?", "Moon"), ("Who wrote Romeo and Juliet?", "Shakespeare"),
    ("Who painted the Mona Lisa?", "Leonardo"), ("What language is mainly spoken in Brazil?", "Portuguese"),
    ("What language is mainly spoken in Mexico?", "Spanish"), ("What is the currency of Japan?", "yen"),
    ("What is the currency of the United Kingdom?", "pound"), ("How many players are on a soccer team on the field?", "11"),
    ("What is the boiling point of water in Fahrenheit?", "212"), ("What shape has four equal sides and four right angles?", "square"),
    ("What is the opposite of north?", "south"), ("What animal is known as the king of the jungle?", "lion"),
    ("What is the largest mammal?", "blue whale"), ("What do caterpillars turn into?", "butterfl"),
]


def build(seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for country, city in CAPITALS.items():
        rows.append(("geography", f"What is the capital of {country}?", city))
    for element, symbol in SYMBOLS.items():
        rows.append(("science", f"What is the chemical symbol for {element}?", symbol))
    for word, opposite in OPPOSITES.items():
        rows.append(("language", f"What is the opposite of '{word}'? Answer with one word.", opposite))
    for animal, young in YOUNG.items():
        rows.append(("nature", f"What is a baby {animal} called?", young))
    for i, month in enumerate(MONTHS):
        rows.append(("time", f"Which month comes after {month}?", MONTHS[(i + 1) % 12]))
    for i, day in enumerate(DAYS):
        rows.append(("time", f"Which day comes after {day}?", DAYS[(i + 1) % 7]))
    for q, a in FACTS:
        rows.append(("general", q, a))
    for _ in range(80):
        a, b = rng.randint(2, 20), rng.randint(2, 20)
        op = rng.choice(["plus", "times", "minus"])
        value = a + b if op == "plus" else a * b if op == "times" else a - b
        rows.append(("arithmetic", f"What is {a} {op} {b}? Answer with a number.", str(value)))
    return [{"domain": d, "question": q, "answer": a} for d, q, a in rows]


def main() -> None:
    rows = build()
    out = Path(__file__).resolve().parents[1] / "src" / "tunelab" / "resources" / "general_qa.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"wrote {len(rows)} questions to {out}")


if __name__ == "__main__":
    main()
