"""`s2build.build(...)` and `s2build.test(...)`: the CLI's build and test in this process.

Both load the project (`path`: a folder or its s2build.yaml), run engine/runner under a
collecting reporter (report/console.Collect) and return dataclasses, never parsed text. Errors
are the S2Error hierarchy (s2build/errors.py) with the CLI's messages; the working directory
is the project's during the call and restored after.

    results = s2build.build("examples/wine")        # [TargetResult]
    results[0].status, results[0].metrics           # 'built', {'accuracy': 0.98, ...}
    report = s2build.test("examples/wine")          # TestReport: .targets, .specs, .passed
"""

import os
from dataclasses import dataclass, field


@dataclass
class TargetResult:
    """One target's outcome: status is built | up-to-date | restored (| failed)."""
    name: str
    status: str
    artifact: str                  # the ONNX file's absolute path
    metrics: dict = field(default_factory=dict)
    reasons: list = field(default_factory=list)   # why it was built or restored, in words
    seconds: float = 0.0
    key: str = ""


@dataclass
class TestReport:
    targets: list                  # [TargetResult]
    specs: list                    # one dict per spec (specs/run.Outcome.as_dict())
    passed: int = 0
    failed: int = 0
    warnings: list = field(default_factory=list)


class _InProject:
    def __init__(self, path):
        from s2build.project import config
        path = os.path.abspath(os.fspath(path))
        if os.path.isdir(path):
            path = os.path.join(path, config.CONFIG_NAME)
        self.path, self.old = path, None

    def __enter__(self):
        from s2build.project import config
        self.old = os.getcwd()
        os.chdir(os.path.dirname(self.path))
        return config.load(self.path)

    def __exit__(self, *exc):
        os.chdir(self.old)


def _result(project, r):
    status = "up-to-date" if r.outcome == "up-to-date" else r.outcome
    metrics = dict(r.metrics)
    if not metrics and r.outcome == "up-to-date":      # the artifact records them
        from s2build.compile.artifact import metadata
        import json
        meta = metadata(os.path.join(project.root, r.output)) or {}
        wanted = [m if isinstance(m, str) else m["name"]
                  for m in project.targets[r.name].config["metrics"]]
        recorded = json.loads(meta.get("s2build.metrics", "{}"))     # rounded to 6 places
        metrics = {k.rpartition(":")[2]: recorded[k.rpartition(":")[2]] for k in wanted
                   if k.rpartition(":")[2] in recorded}
    return TargetResult(name=r.name, status=status,
                        artifact=os.path.join(project.root, r.output), metrics=metrics,
                        reasons=[x.text for x in r.reasons], seconds=r.seconds, key=r.key)


def build(path=".", targets=(), mode="release", wait=True):
    """Bring `targets` (default all) of the project at `path` up to date: [TargetResult]."""
    from s2build.engine import runner
    from s2build.report.console import Collect
    with _InProject(path) as project:
        rep = Collect()
        results = runner.build(project, list(targets), rep, wait=wait, mode=mode)
        return [_result(project, r) for r in results]


def test(path=".", targets=()):
    """Build what is stale, then run the specs on the artifacts: a TestReport."""
    from s2build.engine import runner
    from s2build.release import pipeline
    from s2build.report.console import Collect
    with _InProject(path) as project:
        names = list(targets)
        pipeline.check_spec_files(project, names)
        rep = Collect()
        results = runner.build(project, names, rep, command="test")
        steps, _state = runner.status(project, names)
        outcomes = pipeline.run_all_specs(project, names, {s.target.name: s for s in steps})
        passed, failed = pipeline.counts(outcomes)
        return TestReport(targets=[_result(project, r) for r in results],
                          specs=[o.as_dict() for o in outcomes], passed=passed, failed=failed,
                          warnings=list(rep.warnings))
