"""plan.decide, the one place that decides staleness: toy inputs, no files, no torch.
The wording of the reasons is pinned here: `explain`, `status` and `build` print it."""

import pytest

from s2build.engine import plan
from s2build.engine.plan import Reason, decide, incremental_key


class Toy:
    """Plain Inputs: the fields decide reads, and a key that is a function of them."""

    def __init__(self, sources=None, holdout=None, user_code=None, config=None, toolchain=None,
                 mode="release"):
        self.sources = {"data/a.csv": "a1"} if sources is None else sources
        self.holdout = holdout or {}
        self.user_code = user_code or {}
        self.config = config or {"train": {"epochs": 30}}
        self.toolchain = toolchain or {"torch": "2.5"}
        self.mode = mode
        self.key = repr(sorted(vars(self).items()))

    def record(self, **extra):
        return dict(key=self.key, sources=self.sources, holdout=self.holdout,
                    user_code=self.user_code, config=self.config, toolchain=self.toolchain,
                    mode=self.mode, **extra)


def words(d):
    return [r.text for r in d.reasons]


def test_release_never_built_current_and_output():
    now = Toy()
    d = decide(now, None, set())
    assert (d.action, words(d), d.key) == ("build", ["never built"], now.key)
    assert decide(now, None, {now.key}).action == "restore"
    d = decide(now, now.record(), set())
    assert (d.action, d.reasons) == ("up-to-date", [])
    d = decide(now, now.record(), set(), "missing", output_path="build/t.onnx")
    assert (d.action, d.reasons) == ("build", [Reason("output-missing", "output missing: build/t.onnx")])
    d = decide(now, now.record(), {now.key}, "modified", output_path="build/t.onnx")
    assert (d.action, words(d)) == ("restore", ["output modified: build/t.onnx"])
    assert d.reasons[0].kind in plan.OUTPUT_ONLY


def test_release_reasons_in_words():
    old = Toy(sources={"data/a.csv": "a1", "data/b.csv": "b1", "img/3/x.png": "px"},
              holdout={"h.csv": "h1"}, user_code={"losses.py": "l1"},
              config={"train": {"epochs": 30}, "model": {"hidden": [64]}}, toolchain={"torch": "2.5"})
    new = Toy(sources={"data/a.csv": "a2", "data/c.csv": "c1", "img/8/x.png": "px"},
              holdout={"h.csv": "h2"}, user_code={"losses.py": "l2"},
              config={"train": {"epochs": 40}, "model": {"hidden": [64]}, "loss": "mse"},
              toolchain={"torch": "2.6"})
    d = decide(new, old.record(), set())
    assert d.action == "build"
    assert words(d) == ["file changed: data/a.csv", "file removed: data/b.csv",
                        "file added: data/c.csv", "file moved: img/3/x.png -> img/8/x.png",
                        "holdout file changed: h.csv", "user code changed: losses.py",
                        "config changed: loss ('<unset>' -> 'mse')",
                        "config changed: train.epochs (30 -> 40)",
                        "toolchain changed: torch (2.5 -> 2.6)"]
    assert [r.kind for r in d.reasons][:4] == ["file-changed", "file-removed", "file-added",
                                               "file-moved"]
    assert decide(new, old.record(), {new.key}).action == "restore"
    d = decide(Toy(mode="release"), Toy(mode="incremental").record(), set())
    assert words(d) == ["mode changed: incremental -> release"]
    d = decide(Toy(), dict(Toy().record(), key="other"), set())
    assert words(d) == ["build key changed"]


def test_release_ignores_dev_facts():
    now, last = Toy(sources={"data/a.csv": "a2"}), Toy()
    d = decide(now, last.record(), set(), parent_kept_state=True)
    assert (d.action, d.parent, d.key) == ("build", None, now.key)


def test_dev_only_sources_changed_is_incremental_with_its_own_key():
    last = Toy()
    now = Toy(sources={"data/a.csv": "a2"})
    d = decide(now, last.record(), set(), mode="dev", parent_kept_state=True)
    assert d.action == "incremental" and d.parent == last.key
    assert d.key == incremental_key(now.key, last.key) != now.key
    assert words(d) == [f"incremental from {last.key[:12]}", "file changed: data/a.csv"]
    assert decide(now, last.record(), {d.key}, mode="dev", parent_kept_state=True).action == "restore"


def test_dev_full_builds_say_why():
    last = Toy()
    d = decide(Toy(config={"train": {"epochs": 40}}), last.record(), set(), mode="dev",
               parent_kept_state=True)
    assert (d.action, d.parent) == ("build", None)
    assert words(d) == ["full build: config changed", "config changed: train.epochs (30 -> 40)"]
    d = decide(Toy(sources={"data/a.csv": "a2"}), last.record(), set(), mode="dev",
               parent_kept_state=False)
    assert words(d) == ["full build: the last build kept no weights or optimizer state",
                        "file changed: data/a.csv"]
    d = decide(Toy(), None, set(), mode="dev")
    assert (d.action, words(d)) == ("build", ["full build", "never built"])


def test_dev_release_key_cached_or_current():
    now = Toy(sources={"data/a.csv": "a2"})
    last = Toy(mode="incremental")
    d = decide(now, last.record(), {now.key}, mode="dev", parent_kept_state=True)
    assert (d.action, d.key, words(d)) == ("restore", now.key, ["file changed: data/a.csv"])
    d = decide(now, now.record(), set(), mode="dev", parent_kept_state=True)
    assert (d.action, d.reasons) == ("up-to-date", [])


@pytest.mark.parametrize("output,cached,action", [(None, False, "up-to-date"),
                                                  ("missing", True, "restore"),
                                                  ("missing", False, "incremental")])
def test_dev_an_incremental_build_of_these_inputs_stays_current(output, cached, action):
    now = Toy()
    ikey = incremental_key(now.key, "parentkey")
    rec = dict(now.record(), key=ikey, mode="incremental", parent="parentkey", inputs_key=now.key)
    d = decide(now, rec, {ikey} if cached else set(), output, mode="dev", output_path="b/t.onnx")
    assert (d.action, d.key, d.parent) == (action, ikey, "parentkey")
    assert words(d) == ([] if output is None else ["output missing: b/t.onnx"])


def test_incremental_key_is_stable_and_never_a_release_key():
    assert incremental_key("k", "p") == incremental_key("k", "p") != incremental_key("k", "q")
    assert len(incremental_key("k", "p")) == 64
