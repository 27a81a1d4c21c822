"""Write a sentiment task the demo never trains on, as a user's own dataset folder.

    python scripts/unseen_sentiment.py OUT [--source amazon|tweets|nyt]

The source is the VADER sdist that `elasticlm data fetch demo` already caches: besides the Rotten
Tomatoes sentences the demo's tasks use, it holds Amazon review snippets (3,708), tweets (4,200) and
New York Times editorial snippets (5,190), each with a mean human rating in [-4, 4]. The label is the
rating's sign (`negative` / `positive`; ratings of exactly 0 are dropped), duplicates after whitespace
normalisation keep their first occurrence, and one shuffle with numpy seed 0 cuts train/dev/test
80/10/10 as the demo's tasks are cut. OUT gets train.csv, dev.csv, test.csv and labels.txt; pass it
wherever a task name goes (`elasticlm run --preset demo --task OUT --out runs/amazon`).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from elasticlm.data.demo import first_occurrences, normalise, split_indices, vader_sentences

MEMBERS = {
    "amazon": "hutto_ICWSM_2014/amazonReviewSnippets_GroundTruth.txt",
    "tweets": "hutto_ICWSM_2014/tweets_GroundTruth.txt",
    "nyt": "hutto_ICWSM_2014/nytEditorialSnippets_GroundTruth.txt",
}


def rows(source: str) -> tuple[tuple[str, str], ...]:
    """(text, label) of `source` in file order, zero ratings and repeated texts left out (the demo's
    parsing, duplicate key and split: `elasticlm.data.demo`)."""
    rated = [(normalise(text), "positive" if rating > 0 else "negative")
             for text, rating in vader_sentences(MEMBERS[source]) if rating != 0 and text.strip()]
    return first_occurrences(tuple(rated))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--source", choices=sorted(MEMBERS), default="amazon")
    args = ap.parse_args()
    data = rows(args.source)
    cuts = split_indices(len(data))
    args.out.mkdir(parents=True, exist_ok=True)
    for split, idx in cuts.items():
        with open(args.out / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows(data[i] for i in idx)
    (args.out / "labels.txt").write_text("negative\npositive\n")
    counts = {s: len(i) for s, i in cuts.items()}
    print(f"{args.source}: {len(data)} sentences -> {args.out} {counts}")


if __name__ == "__main__":
    main()
