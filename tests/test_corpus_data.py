"""Bad-input corpus (issue 17), the data and user-code half (tests/corpus.py: the format of
tests/cases/*.yaml and what each case checks; test_corpus.py runs the other half)."""

import pytest

import corpus


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return corpus.built_bases(tmp_path_factory)


@pytest.mark.parametrize("base,case", corpus.params(data=True))
def test_corpus(built, tmp_path, base, case):
    corpus.check(case, built(base), tmp_path / "p")
