"""User code's own imports (issue 10: 3): a `losses.py` that does `from helpers import scale`
builds from any start directory, and an edit to the helper rebuilds, with `explain` naming it.
Imports the static scan cannot see are recorded at run time (a depfile) and keyed next time."""

import os
import sys

from conftest import run
from toy import make_project

LOSS = """\
import torch.nn.functional as F
{imp}

def loss(o, t):
    return F.cross_entropy(o, t) * scale()
"""


def project(d, loss_path="losses.py", imp="from helpers import scale"):
    make_project(d, epochs=5)
    y = d / "s2build.yaml"
    y.write_text(y.read_text().replace("model: {type: mlp, hidden: [64, 64]}",
                                       f"model: {{type: mlp, hidden: [8]}}\n    loss: {loss_path}:loss"))
    (d / loss_path).parent.mkdir(parents=True, exist_ok=True)
    (d / loss_path).write_text(LOSS.format(imp=imp))
    return d


def helper(path, value):
    path.write_text(f"def scale():\n    return {value}\n")


def test_a_helper_beside_the_loss_imports_from_any_start_directory_and_is_keyed(tmp_path):
    d = project(tmp_path / "p")
    helper(d / "helpers.py", 1.0)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    p = run(["-C", str(d), "build"], elsewhere, check=0)
    assert "built in" in p.stdout, p.stdout + p.stderr
    run(["status"], d, check=0)
    helper(d / "helpers.py", 2.0)
    p = run(["-C", str(d), "explain", "toy"], elsewhere, check=0)
    assert "user code changed: helpers.py" in p.stdout, p.stdout
    run(["status"], d, check=1)
    p = run(["build"], d, check=0)                  # from the project folder too
    assert "built in" in p.stdout and "user code changed: helpers.py" in p.stdout, p.stdout
    p = run(["build"], d / "data", check=0)          # and from a subfolder (yaml found above)
    assert "up to date" in p.stdout, p.stdout


def test_a_helper_in_a_subfolder_and_a_package_import(tmp_path):
    d = project(tmp_path / "p", "code/losses.py",
                "from helpers import scale\nfrom lib.consts import FACTOR\n")
    helper(d / "code" / "helpers.py", 1.0)
    (d / "lib").mkdir()
    (d / "lib" / "__init__.py").write_text("")
    (d / "lib" / "consts.py").write_text("from .more import F\nFACTOR = F\n")
    (d / "lib" / "more.py").write_text("F = 1.0\n")
    run(["-C", str(d), "build"], tmp_path, check=0)
    (d / "lib" / "more.py").write_text("F = 3.0\n")       # reached through a relative import
    p = run(["explain", "toy"], d, check=0)
    assert "user code changed: lib/more.py" in p.stdout, p.stdout
    run(["build"], d, check=0)
    helper(d / "code" / "helpers.py", 2.0)
    p = run(["explain", "toy"], d, check=0)
    assert "user code changed: code/helpers.py" in p.stdout, p.stdout


def test_a_dynamic_import_is_recorded_at_run_time_and_keyed_next_time(tmp_path):
    d = project(tmp_path / "p", imp="import importlib\nscale = importlib.import_module"
                                    "('dyn' + 'helpers').scale")
    helper(d / "dynhelpers.py", 1.0)
    p = run(["build"], d, check=0)
    assert "user code imported dynhelpers.py at run time" in p.stdout + p.stderr, p.stdout + p.stderr
    p = run(["explain", "toy"], d, check=0)
    assert "user code added: dynhelpers.py" in p.stdout, p.stdout
    run(["build"], d, check=0)
    run(["status"], d, check=0)                          # stable: recorded, keyed, up to date
    helper(d / "dynhelpers.py", 2.0)
    p = run(["explain", "toy"], d, check=0)
    assert "user code changed: dynhelpers.py" in p.stdout, p.stdout


def test_a_long_lived_process_reloads_an_edited_helper(tmp_path, monkeypatch):
    """watch keeps one process: the loaded module must follow the helper's bytes."""
    from s2build.compile import usercode
    from s2build.project import config
    d = project(tmp_path / "p")
    helper(d / "helpers.py", 1.0)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "dont_write_bytecode", False)       # as for a user's python
    target = config.load(str(d / "s2build.yaml")).targets["toy"]
    fn, _ = usercode.load(target, ("loss",))
    assert fn.__globals__["scale"]() == 1.0
    assert usercode.imported_files(target) == ["helpers.py"]
    # An edit within the same second, same size: the mtime put back makes it certain. Python
    # trusts a .pyc whose source has the same whole-second mtime and size (when it writes them).
    st = os.stat(d / "helpers.py")
    helper(d / "helpers.py", 5.0)
    os.utime(d / "helpers.py", ns=(st.st_atime_ns, st.st_mtime_ns))
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    fn, _ = usercode.load(target, ("loss",))
    assert fn.__globals__["scale"]() == 5.0
    assert "helpers" in sys.modules and sys.path.count(str(d)) == 0   # sys.path restored


def test_the_import_scan_is_reused_on_a_no_op(tmp_path, monkeypatch):
    """A no-op parses no user file: the scan is recorded by digest with the build."""
    from s2build.engine import fingerprint
    from s2build.engine.state import State
    from s2build.project import config
    d = project(tmp_path / "p")
    helper(d / "helpers.py", 1.0)
    run(["build"], d, check=0)
    st = State.load(str(d / ".s2build"))
    target = config.load(str(d / "s2build.yaml")).targets["toy"]
    parsed = []
    real = fingerprint._raw_imports
    monkeypatch.setattr(fingerprint, "_raw_imports", lambda p: parsed.append(p) or real(p))
    inputs, hashed = fingerprint.target_inputs(target, st.files, {}, "release", st.targets["toy"])
    assert parsed == [] and hashed == 0
    assert sorted(inputs.user_code) == ["helpers.py", "losses.py"]
    assert inputs.key == st.targets["toy"]["key"]


def test_watch_watches_the_imported_helpers(tmp_path):
    from s2build.engine.watchrules import Rules
    from s2build.project import config
    d = project(tmp_path / "p", "code/losses.py", "from helpers import scale\nimport lib.k\n")
    helper(d / "code" / "helpers.py", 1.0)
    (d / "lib").mkdir()
    (d / "lib" / "k.py").write_text("K = 1\n")
    rules = Rules(config.load(str(d / "s2build.yaml")), None)
    assert rules.matters("code/helpers.py") and rules.matters("lib/k.py")
    assert str(d / "lib") in rules.folders()
