"""Bad-input corpus (issue 17), the data and user-code half (tests/corpus.py: the format of
tests/cases/*.yaml and what each case checks; test_corpus.py runs the other half)."""


import corpus
from corpus import built  # noqa: F401  (the fixture)


test_corpus = corpus.make_test(data=True)
