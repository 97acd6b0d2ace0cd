"""Why a target is stale, in words: the file-facing half of `engine/plan.py`.

`plan.decide` is the one place that decides (a pure function of plain data); this module
gathers the facts it needs from disk. `output_status(target, record)` says whether the output
file is still the recorded artifact; `reasons(target, inputs, record)` is decide's reasons for a
release build. Each `Reason` has a `kind` (stable, for machines) and a `text` (for people):

    file changed: data/part1.csv
    file moved: data/3/0042.png -> data/8/0042.png
    config changed: train.epochs (30 -> 40)
    output missing: build/wine.onnx

Only the standard library: this module is on the no-op path.
"""

import os

from s2build.engine import fingerprint
from s2build.engine import plan
from s2build.errors import ConfigError
from s2build.engine.plan import OUTPUT_ONLY, Reason, file_changes  # noqa: F401  (names callers use)


def output_status(target, record):
    """None when the output file is the recorded artifact, else 'missing' or 'modified'.
    The same stat cache as sources (fingerprint.digest_files, racy rule included): the output
    is hashed only when its [size, mtime_ns, ctime_ns, inode] differs from
    record['output_stat'], which is then refreshed."""
    try:
        st = os.stat(target.output)
    except FileNotFoundError:
        return "missing"
    stat = record.get("output_stat")
    if isinstance(stat, list) and stat == fingerprint.stat_key(st):
        return None
    if st.st_size != record.get("artifact_size", st.st_size):
        return "modified"
    rel = target.config["output"]
    entry = {rel: list(stat or [None] * 4)[:4] + [record.get("artifact_sha256")]}
    state_dir = os.path.join(target.root, ".s2build")
    try:
        digests, _ = fingerprint.digest_files([rel], target.root, entry,
                                              state_dir if os.path.isdir(state_dir) else None)
    except (ConfigError, OSError):        # vanished or unreadable between stat and read
        return "missing"
    if digests[rel] != record.get("artifact_sha256"):
        return "modified"
    record["output_stat"] = entry[rel][:4]
    return None


def reasons(target, inputs, record):
    """Reasons `target` must be rebuilt or restored in a release build; [] when up to date."""
    status = output_status(target, record) if record and record.get("key") == inputs.key else None
    return plan.decide(inputs, record, (), status, output_path=target.config["output"]).reasons
