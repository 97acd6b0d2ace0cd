"""What `watch` watches: the paths that matter to a set of targets, and the folders to observe.

A path matters when it is the yaml, a user code file (or a project module it imports), a rule's
input or program file, or matched by a source or holdout glob; s2build's own writes
(`.s2build/`, outputs and their sidecars, rule outputs, atomic-write temporaries) and editors'
hidden swap files never do. A change to a rule's input reruns the rule, then the targets that
read its outputs (runner.build does both).
"""

import fnmatch
import glob
import os

from s2build import atomic
from s2build.engine import fingerprint
from s2build.errors import S2Error


class Rules:
    """Which paths (relative to the project root) matter to `names` (default all) and their
    dependencies: the yaml, user code files (and the project modules they import, as found
    when the rules are made) and anything a source or holdout glob matches."""

    def __init__(self, project, names):
        from s2build.project import graph
        self.root = project.root
        self.yaml = os.path.relpath(project.path, self.root)
        try:
            wanted = graph.order(project, names)
        except S2Error:
            wanted = list(project.targets)
        self.patterns, self.user, self.outputs = [], set(), set()
        for name in wanted:
            t = project.targets[name]
            for pat in t.config["sources"] + (t.config["holdout"]["sources"] or []):
                self.patterns.append(os.path.normpath(pat))
            for _role, _path, rel, _name in t.user_refs():
                self.user.add(os.path.normpath(rel))
            try:                            # and the project modules the user code imports
                self.user.update(os.path.normpath(r) for r in fingerprint.user_code(t, {})[0])
            except (S2Error, OSError):
                pass
            self.outputs.update({t.config["output"], t.config["output"] + ".json"})
        self.outputs = {os.path.normpath(p) for p in self.outputs}
        self.made = []                      # rule outputs: s2build's writes, never a change
        try:                                # rules the targets read: inputs, program files
            from s2build.engine import rules
            rule_names = rules.needed(project, names)[0]
        except S2Error:
            rule_names = list(project.rules)
        for name in rule_names:
            r = project.rules[name]
            self.made += r.outputs
            self.patterns += [os.path.normpath(p) for p in r.config["inputs"]
                              if p not in project.rules]
            self.user.update(rules.program_files(r))

    def matters(self, rel):
        if rel == self.yaml or rel in self.user:
            return True
        base = os.path.basename(rel)
        if rel.startswith(".s2build" + os.sep) or rel in self.outputs \
                or base.startswith(atomic.TMP_PREFIX) or ".s2tmp-" in rel \
                or any(rel == o or (f and rel.startswith(o + "/")) for o, f in self.made):
            return False
        for pat in self.patterns:
            if base.startswith(".") and not os.path.basename(pat).startswith("."):
                continue                              # editors' swap files, hidden temporaries
            if fnmatch.fnmatchcase(rel, pat) or fnmatch.fnmatchcase(rel, pat.replace("**/", "")):
                return True
        return False

    def files(self):
        """Relative paths of every existing file that matters now."""
        found = {self.yaml, *self.user}
        for pat in self.patterns:
            for m in glob.glob(pat, root_dir=self.root, recursive=True):
                if os.path.isfile(os.path.join(self.root, m)) and self.matters(os.path.normpath(m)):
                    found.add(os.path.normpath(m))
        return sorted(found)

    def folders(self):
        """{absolute folder: recursive} to watch: the yaml's folder, each glob's fixed prefix
        (recursive when the rest of the glob spans folders) and the user code's folders."""
        out = {self.root: False}
        for pat in self.patterns:
            parts = pat.split(os.sep)
            fixed = 0
            while fixed < len(parts) - 1 and not glob.has_magic(parts[fixed]):
                fixed += 1
            folder = os.path.normpath(os.path.join(self.root, *parts[:fixed]))
            recursive = len(parts) - fixed > 1 or "**" in pat
            while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
                folder, recursive = os.path.dirname(folder), True
            out[folder] = out.get(folder, False) or recursive
        for rel in self.user:
            folder = os.path.dirname(os.path.join(self.root, rel))
            if os.path.isdir(folder):
                out.setdefault(os.path.normpath(folder), False)
        return out
