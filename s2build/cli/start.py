"""Commands that start a project: init (a commented s2build.yaml for a data folder) and schema
(the JSON Schema of s2build.yaml, for editors). Thin: the work is in s2build/data/survey.py,
s2build/project/scaffold.py and s2build/project/schemajson.py. Standard library only at
import; `init` reads tables with pyarrow inside data/survey.py, never torch."""

import os
import sys

from s2build import atomic, errors
from s2build.errors import UsageError


def cmd_schema(args):
    from s2build.project import schemajson
    text = schemajson.text()
    if args.output:
        path = os.path.join(args.cwd, args.output)
        if os.path.isdir(path):
            raise UsageError(f"-o {args.output}: is a folder", None,
                             "name a file, e.g. s2build.schema.json")
        atomic.write_text(path, text)
        print(f"s2build: wrote {os.path.relpath(path, args.cwd)}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return errors.OK


def cmd_init(args):
    from s2build.data import survey
    from s2build.project import scaffold
    from s2build.project.schema import CONFIG_NAME
    folder = os.path.normpath(os.path.join(args.cwd, args.dir))
    if not os.path.isdir(folder):
        raise UsageError(f"init: '{args.dir}' is not a folder", None,
                         "name the folder that holds the data (default: .)")
    path = os.path.join(folder, CONFIG_NAME)
    shown = os.path.relpath(path, args.cwd)
    if os.path.lexists(path):
        raise errors.ConfigError(f"{CONFIG_NAME} already exists; init never overwrites it",
                                 shown, "edit it, or move it away and run init again")
    found = survey.survey(folder, label=args.label)
    text = scaffold.yaml_text(found, name=scaffold.target_name(folder, args.name),
                              epochs=args.epochs)
    atomic.write_text(path, text)
    print(f"s2build: wrote {shown}: {scaffold.summary(found)}", file=sys.stderr)
    print(f"s2build: build it with:  s2build -C {os.path.relpath(folder, args.cwd)} build",
          file=sys.stderr)
    return errors.OK


def add_parsers(sub):
    i = sub.add_parser("init", help="write a commented s2build.yaml for a data folder")
    i.add_argument("dir", nargs="?", default=".", metavar="DIR",
                   help="the project folder that holds the data (default: .)")
    i.add_argument("--label", metavar="NAME",
                   help="the label column or field (default: proposed from the data)")
    i.add_argument("--name", metavar="TARGET", help="the target's name (default: the folder's)")
    i.add_argument("--epochs", type=_positive, metavar="N",
                   help="train.epochs (default: chosen from the number of rows)")
    i.set_defaults(func=cmd_init)

    s = sub.add_parser("schema", help="print the JSON Schema of s2build.yaml (for editors)")
    s.add_argument("-o", "--output", metavar="FILE", help="write it to FILE instead")
    s.set_defaults(func=cmd_schema)


def _positive(text):
    from s2build.cli.common import count_arg
    return count_arg()(text)
