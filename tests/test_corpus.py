"""Bad-input corpus (issue 17): the cases are data, tests/cases/*.yaml, one file per category
(tests/corpus.py says the format and what each case checks). Every case runs the real CLI in a
subprocess on a built project and must fail clearly (exit code, location, fix, no traceback),
lose nothing, and build back to the same bytes once undone."""

import shutil

import pytest

import corpus
from conftest import run, sha256

ENV = {"S2BUILD_NO_SERVER": "1"}
CASES = corpus.load()
PARAMS = [pytest.param(base, case, id=f"{cat}/{case['name']}")
          for cat, (base, cases) in sorted(CASES.items()) for case in cases]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """{base: a built project}, each built once (lazily) for the whole module."""
    made = {}

    def get(base):
        if base not in made:
            d = corpus.make_base(base, tmp_path_factory.mktemp("base") / base)
            run(["build"], d, timeout=300, check=0, env=ENV)
            made[base] = d
        return made[base]
    return get


@pytest.mark.parametrize("base,case", PARAMS)
def test_corpus(built, tmp_path, base, case):
    d = tmp_path / "p"
    shutil.copytree(built(base), d)
    before = corpus.digests(d)
    artifact = sha256(d / corpus.ARTIFACT)
    saved = corpus.apply(case, d)
    p = run(case.get("argv", ["build"]), d, timeout=120, env=ENV)
    err = p.stderr + p.stdout
    assert p.returncode == case["exit"], f"exit {p.returncode}\n{err}"
    assert "Traceback" not in err and "internal error" not in err, err
    if case.get("where"):
        assert corpus.located(case["where"], err), err
    assert case["says"] in err, err
    if case.get("fix"):
        assert case["fix"] in err, err
    after = corpus.digests(d)
    exempt = corpus.written(case)
    lost = {k for k, v in before.items() if k not in exempt and after.get(k) != v}
    assert not lost, f"changed or removed: {sorted(lost)}"
    assert not list(d.rglob(".s2tmp-*"))
    corpus.undo(saved, d)
    p = run(["build"], d, timeout=120, env=ENV)
    assert p.returncode == 0 and "up to date" in p.stdout, p.stdout + p.stderr
    assert sha256(d / corpus.ARTIFACT) == artifact


def test_the_corpus_covers_every_category():
    """The README states these counts; at least 150 cases in all."""
    counts = {cat: len(cases) for cat, (_, cases) in CASES.items()}
    assert sum(counts.values()) >= 150, counts


def test_a_failure_says_why_on_either_stream(tmp_path):
    """Redirecting one stream must not lose the reason: stdout's `t: failed` line carries the
    first line of the diagnostic that stderr prints. (`1e6` is a number, as in YAML 1.2.)"""
    d = corpus.make_base("csv", tmp_path / "p")
    y = d / "s2build.yaml"
    y.write_text(y.read_text().replace("lr: 0.01", "lr: 1e6").replace("epochs: 1,", "epochs: 3,"))
    p = run(["build"], d, timeout=120, env=ENV)
    assert p.returncode == 5, p.stderr
    assert "s2build.yaml:7:43: training diverged" in p.stderr, p.stderr
    assert p.stdout.startswith("t: failed: s2build.yaml:7:43: training diverged"), p.stdout
    assert not (d / "build" / "t.onnx").exists()
