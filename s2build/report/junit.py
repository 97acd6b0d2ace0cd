"""JUnit XML for spec outcomes, the format CI systems read (one suite per target, one case per
spec):

    <testsuites name="s2build" tests= failures= errors= time=>
      <testsuite name="wine" tests= failures= errors= skipped="0" time=>
        <testcase classname="s2build.wine" name="holdout accuracy" file="s2build.yaml"
                  line="33" time=>
          <failure type="gate" message="...">s2build.yaml:33:11: ...</failure>   (or <error>)
"""


def junit_xml(outcomes, project_targets):
    """JUnit XML text: one <testsuite> per target that has specs, one <testcase> per spec."""
    import xml.etree.ElementTree as ET
    suites = ET.Element("testsuites", name="s2build")
    by_target = {}
    for o in outcomes:
        by_target.setdefault(o.spec.target, []).append(o)
    tot = {"tests": 0, "failures": 0, "errors": 0, "time": 0.0}
    for name in [n for n in project_targets if n in by_target]:
        items = by_target[name]
        fails = sum(1 for o in items if not o.passed and not o.error)
        errs = sum(1 for o in items if o.error)
        t = sum(o.seconds for o in items)
        suite = ET.SubElement(suites, "testsuite", name=name, tests=str(len(items)),
                              failures=str(fails), errors=str(errs), skipped="0",
                              time=f"{t:.3f}")
        for o in items:
            loc = (o.spec.loc or "").split(":")
            attrs = {"classname": f"s2build.{name}", "name": o.spec.name, "time": f"{o.seconds:.3f}"}
            if len(loc) >= 2 and loc[1].isdigit():
                attrs.update(file=loc[0], line=loc[1])
            case = ET.SubElement(suite, "testcase", **attrs)
            if not o.passed:
                el = ET.SubElement(case, "error" if o.error else "failure",
                                   type=o.spec.kind, message=o.message)
                el.text = f"{o.spec.loc}: {o.message}"
        tot["tests"] += len(items)
        tot["failures"] += fails
        tot["errors"] += errs
        tot["time"] += t
    for k in ("tests", "failures", "errors"):
        suites.set(k, str(tot[k]))
    suites.set("time", f"{tot['time']:.3f}")
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
