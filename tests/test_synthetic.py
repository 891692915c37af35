import re
from collections import Counter

import numpy as np

from hmm_lang.synthetic import generate_stories, vocabulary


def test_deterministic_by_seed_and_index():
    a = list(generate_stories(20, seed=5))
    assert a == list(generate_stories(20, seed=5))
    assert a[:7] == list(generate_stories(7, seed=5))
    assert a != list(generate_stories(20, seed=6))


def test_story_shape():
    stories = list(generate_stories(200))
    assert all(s and s[-1] in '.!"' for s in stories)
    assert sum('"' in s for s in stories) > 100  # dialogue is common
    assert all(s.count("\n") <= 2 for s in stories)


def test_thousands_of_distinct_words_with_zipf_like_frequencies():
    assert len(vocabulary()) >= 3000
    words = Counter(re.findall(r"[A-Za-z]+", " ".join(generate_stories(3000))))
    assert len(words) >= 2000
    freqs = np.sort(np.array(list(words.values())))[::-1]
    ranks = np.arange(1, len(freqs) + 1)
    slope = np.polyfit(np.log(ranks[:1000]), np.log(freqs[:1000]), 1)[0]
    assert -2.0 < slope < -0.7  # heavy-tailed, roughly Zipfian
