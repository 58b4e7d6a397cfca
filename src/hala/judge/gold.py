"""The bundled judge gold set: held-out pairs, and the same pairs corrupted in six ways.

`python -m hala.judge.gold` rewrites `hala/resources/samples/judge_gold.jsonl` from two bundled
files, deterministically (a fixed seed), and a test checks that the committed file is what this
script writes.

Which pairs: `test_pairs.jsonl` rows 61-150 (the ocean, chess and volcano topics). No stage trains
on `test_pairs.jsonl` (the teacher warms up on `seed_pairs.jsonl`, the translator on the teacher's
pairs and the judged external pairs), so a model can't have memorised them; and `eval_translation`
of the tiny recipe reads only the first 60 rows, so the two evaluations don't share a pair.

Each of the 90 pairs is kept as it is (`kind: good`, `label: 1`) and corrupted (`label: 0`):

- `swapped`: the Arabic of another pair (a fixed random derangement);
- `truncated`: the first half of the Arabic words;
- `untranslated`: the English copied as the target;
- `added`: the Arabic followed by another pair's Arabic sentence;
- `numbers`: every number in the Arabic changed (only the pairs whose Arabic holds digits);
- `wrong_language`: a French translation instead of the Arabic (`judge_gold_fr.jsonl`, written for
  hala, for every fifth pair).
"""

from __future__ import annotations

import json
import random
import re
from importlib import resources
from pathlib import Path

FIRST, LAST = 61, 150  # test_pairs.jsonl rows (1-based) the gold set is built from
SEED = 12
KINDS = ("good", "swapped", "truncated", "untranslated", "added", "numbers", "wrong_language")


def _samples(name: str) -> Path:
    return Path(str(resources.files("hala.resources").joinpath("samples", name)))


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _derangement(n: int, rng: random.Random) -> list[int]:
    while True:
        order = list(range(n))
        rng.shuffle(order)
        if all(i != j for i, j in enumerate(order)):
            return order


def _changed_numbers(text: str) -> str:
    def change(match: re.Match) -> str:
        number = int(match.group().replace(",", "")) * 3 + 7
        return f"{number:,}" if "," in match.group() else str(number)

    return re.sub(r"\d[\d,]*\d|\d", change, text)


def build_gold(pairs: list[dict], french: dict[str, str], seed: int = SEED) -> list[dict]:
    """The gold rows for `pairs` ({id, en, ar}); `french` maps a pair id to its French translation."""
    rng = random.Random(seed)
    swap, extra = _derangement(len(pairs), rng), _derangement(len(pairs), rng)
    rows = []

    def add(pair: dict, kind: str, ar: str) -> None:
        rows.append({"id": f"{pair['id']}-{kind}", "source_id": pair["id"], "kind": kind,
                     "label": int(kind == "good"), "en": pair["en"], "ar": ar})  # fmt: skip

    for i, pair in enumerate(pairs):
        words = pair["ar"].split()
        add(pair, "good", pair["ar"])
        add(pair, "swapped", pairs[swap[i]]["ar"])
        add(pair, "truncated", " ".join(words[: max(1, len(words) // 2)]))
        add(pair, "untranslated", pair["en"])
        add(pair, "added", f"{pair['ar']} {pairs[extra[i]]['ar']}")
        if re.search(r"\d", pair["ar"]):
            add(pair, "numbers", _changed_numbers(pair["ar"]))
        if pair["id"] in french:
            add(pair, "wrong_language", french[pair["id"]])
    return rows


def bundled_gold() -> list[dict]:
    """The gold set as this script builds it from the bundled files."""
    pairs = _jsonl(_samples("test_pairs.jsonl"))[FIRST - 1 : LAST]
    french = {row["id"]: row["fr"] for row in _jsonl(_samples("judge_gold_fr.jsonl"))}
    return build_gold(pairs, french)


def main() -> None:
    target = _samples("judge_gold.jsonl")
    rows = bundled_gold()
    target.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    counts = {k: sum(r["kind"] == k for r in rows) for k in KINDS}
    print(f"wrote {target}: {len(rows)} rows, {counts}")


if __name__ == "__main__":
    main()
