"""Global flags before or after the command (as git and cargo take them), `-C` applied to file
arguments, and `--help` with examples and exit codes: the real CLI in a subprocess."""

import json

from conftest import run


def _same(a, b):
    assert (a.returncode, a.stdout, a.stderr) == (b.returncode, b.stdout, b.stderr)


def test_verbose_before_or_after_the_command(wine):
    text = (wine / "s2build.yaml").read_text()
    (wine / "s2build.yaml").write_text(text.replace("epochs:", "epoch:", 1))
    before = run(["-v", "status"], wine)
    after = run(["status", "-v"], wine)
    assert before.returncode == 3 and "Traceback" in before.stderr, before.stderr
    assert "did you mean 'epochs'" in before.stderr
    _same(before, after)
    quiet = run(["status"], wine)
    assert quiet.returncode == 3 and "Traceback" not in quiet.stderr


def test_directory_before_or_after_the_command(wine):
    outer = wine.parent
    before = run(["-C", "wine", "status", "--json"], outer)
    after = run(["status", "--json", "-C", "wine"], outer)
    _same(before, after)
    assert before.returncode == 0
    assert [t["name"] for t in json.loads(before.stdout)["targets"]] == ["wine"]


def test_file_before_or_after_the_command(wine, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    yaml = str(wine / "s2build.yaml")
    before = run(["-f", yaml, "status"], elsewhere)
    after = run(["status", "-f", yaml], elsewhere)
    _same(before, after)
    assert before.returncode == 0 and "up to date" in before.stdout + before.stderr


def test_json_before_or_after_the_command(wine):
    before = run(["--json", "status"], wine)
    after = run(["status", "--json"], wine)
    _same(before, after)
    assert json.loads(before.stdout)["targets"][0]["name"] == "wine"


def test_json_on_a_command_without_json_is_a_usage_error(wine):
    p = run(["--json", "shutdown"], wine)
    assert p.returncode == 2 and "`shutdown` has no JSON output" in p.stderr


def test_no_server_before_or_after_the_command(wine):
    before = run(["--no-server", "build"], wine, env={"S2BUILD_SERVER": "1"})
    after = run(["build", "--no-server"], wine, env={"S2BUILD_SERVER": "1"})
    _same(before, after)
    assert before.returncode == 0
    assert not (wine / ".s2build" / "server").exists() or not any(
        p.name.endswith(".sock") for p in (wine / ".s2build" / "server").iterdir())


def test_directory_applies_to_file_arguments(wine):
    """examples/wine/README.md: `s2build -C examples/wine predict wine data/wine-1.csv`."""
    p = run(["-C", "wine", "--no-server", "predict", "wine", "data/wine-1.csv", "--json"],
            wine.parent)
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)
    assert len(rows) > 10


def test_help_has_examples_and_exit_codes(tmp_path):
    top = run(["--help"], tmp_path, check=0)
    assert "exit codes:" in top.stdout and "example:" in top.stdout
    for command in ("build", "status", "predict", "lint", "watch"):
        p = run([command, "--help"], tmp_path, check=0)
        assert "examples:" in p.stdout and f"s2build {command}" in p.stdout, command
        assert "global options (also accepted before the command)" in p.stdout


def test_bash_completion_from_the_parser(wine):
    """The generated script, sourced in a real bash, completes commands, a command's flags and
    the project's target names (which it asks of `s2build completion --targets`)."""
    import shutil
    import subprocess
    import sys
    script = run(["completion", "bash"], wine, check=0).stdout
    assert "complete -o default -F _s2build s2build" in script
    assert run(["completion", "--targets"], wine, check=0).stdout.split() == ["wine"]
    if shutil.which("bash") is None:
        return
    shim = wine / "bin"
    shim.mkdir()
    (shim / "s2build").write_text(f"#!/bin/sh\nexec {sys.executable} -m s2build \"$@\"\n")
    (shim / "s2build").chmod(0o755)

    def complete(*words):
        probe = (f'source "$1"; COMP_WORDS=({" ".join(words)}); COMP_CWORD={len(words) - 1}; '
                 '_s2build; echo "${COMPREPLY[@]}"')
        (wine / "c.sh").write_text(script)
        env = {"PATH": f"{shim}:/usr/bin:/bin", "HOME": str(wine)}
        import os
        env.update({k: v for k, v in os.environ.items() if k.startswith("PYTHON")})
        p = subprocess.run(["bash", "-c", probe, "bash", str(wine / "c.sh")], cwd=wine, env=env,
                           capture_output=True, text=True, timeout=60)
        return p.stdout.split()

    assert complete("s2build", "bu") == ["build"]
    assert complete("s2build", "-v", "build", "w") == ["wine"]
    assert "--fail-on" in complete("s2build", "lint", "--f")
    assert "--max" in complete("s2build", "lint", "--")
    zsh = run(["completion", "zsh"], wine, check=0).stdout
    assert zsh.startswith("autoload -U +X bashcompinit")
