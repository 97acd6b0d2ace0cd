"""Bad-input corpus (issue 17), the yaml and command-line half: the cases are data,
tests/cases/*.yaml, one file per category (tests/corpus.py says the format and what each case
checks; test_corpus_data.py runs the data and user-code half). Every case runs the real CLI in
a subprocess on a built project and must fail clearly (exit code, location, fix, no traceback),
lose nothing, and build back to the same bytes once undone."""


import corpus
from corpus import built  # noqa: F401  (the fixture)
from conftest import run

ENV = corpus.ENV


test_corpus = corpus.make_test(data=False)


def test_the_readme_states_the_count_of_every_category():
    """README.md's corpus table holds each category's count and the total (at least 150)."""
    import re
    counts = {cat: len(cases) for cat, (_, cases) in corpus.load().items()}
    readme = (corpus.CASES_DIR.parent.parent / "README.md").read_text()
    stated = {m[0]: int(m[1]) for m in re.findall(r"^\| `([a-z]+)` \| (\d+) \|", readme, re.M)}
    assert stated == counts
    assert f"without training. {sum(counts.values())} cases:" in " ".join(readme.split())
    assert sum(counts.values()) >= 150


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
