"""Rules that generate data (project/rules.py, engine/rules.py, engine/rulerun.py): the real
CLI in a subprocess (`--no-server`), real files and commands, tiny epochs."""

import json
from pathlib import Path

from conftest import run

GEN = """\
import os, sys
with open("counter.txt", "a") as f:
    f.write("ran\\n")
if os.environ.get("FAIL"):
    sys.stderr.write("generator broke on purpose\\n")
    sys.exit(3)
seed = int(open("seed.txt").read())
if os.environ.get("FORGET"):
    sys.exit(0)
with open(sys.argv[1], "w") as f:
    f.write("x0,x1,y\\n")
    for i in range(int(os.environ["N"])):
        a = (i * 7 + seed) % 10
        f.write(f"{a},{(i * 3) % 5},{int(a > 4)}\\n")
"""

YAML = """\
version: 1
rules:
  table:
    command: [python, gen/make.py, data/t.csv]
    inputs: [seed.txt]
    outputs: [data/t.csv]
    env: {{N: 40{env}}}
targets:
  m:
    sources: [data/t.csv]
    loader: {{format: csv, label: y, task: classification, classes: 2}}
    model: {{type: mlp, hidden: [4]}}
    train: {{epochs: 1}}
    output: build/m.onnx
"""


def project(tmp_path, env=""):
    (tmp_path / "gen").mkdir()
    (tmp_path / "gen" / "make.py").write_text(GEN)
    (tmp_path / "seed.txt").write_text("3\n")
    (tmp_path / "s2build.yaml").write_text(YAML.format(env=env))
    return tmp_path


def s2(args, cwd, check=None):
    return run(["--no-server", *args], cwd, check=check)


def runs(d):
    p = Path(d) / "counter.txt"
    return len(p.read_text().splitlines()) if p.exists() else 0


def test_revert_restores_without_running(tmp_path):
    d = project(tmp_path)
    assert "table: ran" in s2(["build", "table"], d, check=0).stdout
    first = (d / "data" / "t.csv").read_bytes()
    assert "table: up to date" in s2(["build", "table"], d, check=0).stdout
    (d / "seed.txt").write_text("4\n")
    out = s2(["build", "table"], d, check=0).stdout
    assert "table: ran" in out and "input changed: seed.txt" in out
    assert runs(d) == 2 and (d / "data" / "t.csv").read_bytes() != first
    (d / "seed.txt").write_text("3\n")
    out = s2(["build", "table"], d, check=0).stdout
    assert "table: restored from cache" in out
    assert runs(d) == 2, "the command ran for a revert"
    assert (d / "data" / "t.csv").read_bytes() == first
    (d / "data" / "t.csv").write_text("edited by hand\n")      # a damaged output: restored
    assert "restored from cache (output modified" in s2(["build", "table"], d, check=0).stdout
    assert (d / "data" / "t.csv").read_bytes() == first and runs(d) == 2


def test_failing_command_keeps_previous_outputs(tmp_path):
    d = project(tmp_path)
    s2(["build", "table"], d, check=0)
    good = (d / "data" / "t.csv").read_bytes()
    (d / "s2build.yaml").write_text(YAML.format(env=", FAIL: 1"))
    p = s2(["build", "table"], d, check=5)
    assert "s2build.yaml:4:" in p.stderr and "rule 'table': command failed with exit status 3" \
        in p.stderr and "generator broke on purpose" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr
    assert (d / "data" / "t.csv").read_bytes() == good
    (d / "s2build.yaml").write_text(YAML.format(env=", FORGET: 1"))
    p = s2(["build", "table"], d, check=5)
    assert "s2build.yaml:6:" in p.stderr and "did not write its output 'data/t.csv'" in p.stderr
    assert (d / "data" / "t.csv").read_bytes() == good
    assert not list((d / "data").glob(".s2tmp-*"))


def test_cycle_is_named_in_full(tmp_path):
    (tmp_path / "s2build.yaml").write_text("""\
version: 1
rules:
  a:
    command: [python, -c, "pass"]
    inputs: [b.txt]
    outputs: [a.txt]
  b:
    command: [python, -c, "pass"]
    inputs: [a]
    outputs: [b.txt]
targets:
  m:
    sources: [a.txt]
    loader: {format: csv, label: y}
    output: build/m.onnx
""")
    p = s2(["build"], tmp_path, check=3)
    assert "s2build.yaml:5:" in p.stderr and "dependency cycle: a -> b -> a" in p.stderr, p.stderr


def test_bad_rule_config_is_located(tmp_path):
    d = project(tmp_path)
    text = YAML.format(env="").replace("command: [python, gen/make.py, data/t.csv]",
                                       "comand: [python, gen/make.py, data/t.csv]")
    (d / "s2build.yaml").write_text(text)
    p = s2(["status"], d, check=3)
    assert "s2build.yaml:4:" in p.stderr and "did you mean 'command'" in p.stderr, p.stderr
    (d / "s2build.yaml").write_text(YAML.format(env="").replace(
        "[python, gen/make.py, data/t.csv]", '"python gen/make.py data/t.csv"'))
    p = s2(["status"], d, check=3)
    assert "s2build.yaml:4:" in p.stderr and "shell: true" in p.stderr


def test_key_changes_when_the_script_changes(tmp_path):
    d = project(tmp_path)
    s2(["build", "table"], d, check=0)
    (d / "gen" / "make.py").write_text(GEN + "# an edit\n")
    assert "program changed: gen/make.py" in s2(["explain", "table"], d, check=0).stdout
    out = s2(["build", "table"], d, check=0).stdout
    assert "table: ran" in out and runs(d) == 2
    (d / "s2build.yaml").write_text(YAML.format(env="").replace("N: 40", "N: 41"))
    assert "env changed: N ('40' -> '41')" in s2(["explain", "table"], d, check=0).stdout


def test_rule_feeds_a_target(tmp_path):
    d = project(tmp_path)
    p = s2(["status"], d, check=1)
    assert "table: stale rule, needs a run (never run)" in p.stdout
    assert "m: stale, needs a build (rule 'table' runs first" in p.stdout
    graph = s2(["graph"], d, check=0).stdout
    assert "table (rule) -> data/t.csv" in graph and "m <- table" in graph
    assert '"table" -> "m"' in s2(["graph", "--dot"], d, check=0).stdout
    assert json.loads(s2(["graph", "--json"], d, check=0).stdout)["m"]["rules"] == ["table"]
    out = s2(["build"], d, check=0).stdout
    assert out.index("table: ran") < out.index("m: built")
    (d / "seed.txt").write_text("5\n")                  # the rule's input: both rebuild
    out = s2(["build"], d, check=0).stdout
    assert "table: ran" in out and "m: built" in out and "file changed: data/t.csv" in out
    st = s2(["status", "--json"], d, check=0)
    assert json.loads(st.stdout)["stale"] == []
    assert "table: up to date (rule)" in s2(["status"], d, check=0).stdout


def test_clean_removes_recorded_rule_outputs(tmp_path):
    d = project(tmp_path)
    s2(["build", "table"], d, check=0)
    out = s2(["clean", "table"], d, check=0).stdout
    assert "removed data/t.csv" in out and not (d / "data" / "t.csv").exists()
    assert "restored from cache" in s2(["build", "table"], d, check=0).stdout and runs(d) == 1
    (d / "data" / "t.csv").write_text("mine\n")
    assert "kept data/t.csv (not the output s2build recorded" in s2(["clean"], d, check=0).stdout


def test_life_example_generates_its_data_and_verifies(tmp_path):
    from conftest import copy_example
    d = copy_example("life", tmp_path / "life")
    (d / "data" / "boards.jsonl").unlink(missing_ok=True)      # a clean checkout has none
    out = s2(["build"], d, check=0).stdout
    assert "boards: ran" in out and "life: built" in out
    assert (d / "data" / "boards.jsonl").exists()
    assert "boards: up to date" in s2(["build"], d, check=0).stdout
    p = s2(["verify"], d, check=0)
    assert "life: reproducible" in p.stdout + p.stderr


def test_watch_sees_rule_inputs_and_program_not_outputs(tmp_path):
    from s2build.engine.watchrules import Rules
    from s2build.project import config
    d = project(tmp_path)
    rules = Rules(config.load(str(d / "s2build.yaml")), [])
    assert rules.matters("seed.txt") and rules.matters("gen/make.py")
    assert not rules.matters("data/t.csv"), "a rule's output is s2build's write, not an edit"
    assert str(d) in rules.folders()
