"""blame and seeds through the real CLI: planted rows that cause a behaviour are blamed."""

import json

import numpy as np

from conftest import run


def test_blame_finds_the_rows_that_caused_a_prediction(wine):
    rows = (wine / "data" / "wine-1.csv").read_text().splitlines()
    header, query = rows[0], rows[5]                     # data/wine-1.csv:6, a cultivar-0 wine
    assert query.endswith(",0")
    values = np.array([float(v) for v in query.split(",")[:-1]])
    rng = np.random.default_rng(0)
    planted = [",".join(f"{v:.4g}" for v in values * (1 + rng.normal(0, 0.002, len(values)))) + ",2"
               for _ in range(8)]
    (wine / "data" / "wine-4.csv").write_text("\n".join([header] + planted) + "\n")
    run(["build"], wine, check=0)
    p = run(["blame", "wine", "--input", "data/wine-1.csv:6", "-k", "8", "--json"], wine, check=0)
    out = json.loads(p.stdout)
    assert out["prediction"] == "2" and out["exact"]        # the planted rows changed the output
    blamed = [r["origin"] for r in out["rows"]]
    assert sum(o.startswith("data/wine-4.csv:") for o in blamed) >= 6, blamed
    text = run(["blame", "wine", "--input", "data/wine-1.csv:6", "-k", "3"], wine, check=0).stdout
    assert text.splitlines()[0] == "data/wine-1.csv:6: predicted 2 (p=" + \
        f"{out['probability']:.2f}), labelled 0"


def test_blame_on_a_new_input_file_and_bad_queries(wine, tmp_path):
    q = tmp_path / "q.csv"
    q.write_text((wine / "data" / "wine-1.csv").read_text().splitlines()[0] + "\n" +
                 (wine / "data" / "wine-1.csv").read_text().splitlines()[3] + "\n")
    p = run(["blame", "wine", "--input", str(q), "-k", "4", "--json"], wine, check=0)
    out = json.loads(p.stdout)
    assert not out["exact"] and len(out["rows"]) == 4
    p = run(["blame", "wine", "--input", "data/nope.csv:3"], wine, check=2)
    assert "neither a row of the dataset nor a file" in p.stderr


def test_seeds_report_and_cached_variants(wine):
    p = run(["seeds", "wine", "-n", "2", "--json"], wine, check=0)
    rep = json.loads(p.stdout)
    assert set(rep["error_rate"]) == {"0", "1"} and rep["holdout_rows"] > 0
    assert 0 <= rep["disagreement_rate"] <= 1
    for r in rep["flipping_rows"]:
        assert r["origin"].startswith("data/wine-")
    names = ["a textbook cultivar-0 wine", "a cultivar-2 row stays cultivar 2", "holdout accuracy",
             "holdout macro F1", "robust to measurement noise (5% of each feature's spread)"]
    assert list(rep["specs"]) == names                     # each seed's artifact ran the specs
    for name in names:
        assert rep["specs"][name]["seeds"] == 2 and 0 <= rep["specs"][name]["passed"] <= 2
        assert rep["specs"][name]["rate"] == rep["specs"][name]["passed"] / 2
    assert rep["specs"]["a textbook cultivar-0 wine"]["passed"] == 2
    again = run(["seeds", "wine", "-n", "2"], wine, check=0)
    assert "building" not in again.stderr                 # each seed is cached like any build
    assert again.stdout.startswith("wine: 2 seeds, holdout error seed 0: ")
    assert "spec a textbook cultivar-0 wine: passes under 2 of 2 seeds (100%)" in again.stdout


def test_blame_the_input_of_an_example_spec(wine):
    p = run(["blame", "wine", "--spec", "a cultivar-2 row stays cultivar 2", "-k", "3", "--json"],
            wine, check=0)
    out = json.loads(p.stdout)
    assert out["query"] == "data/wine-3.csv:46" and out["exact"] and len(out["rows"]) == 3
    p = run(["blame", "wine", "--spec", "a textbook cultivar-0 wine", "-k", "3", "--json"],
            wine, check=0)
    out = json.loads(p.stdout)
    assert out["query"] == "spec 'a textbook cultivar-0 wine'" and not out["exact"]
    assert out["prediction"] == "0" and len(out["rows"]) == 3
    out = json.loads(run(["blame", "wine", "--spec", "holdout accuracy", "-k", "3", "--json"],
                         wine, check=0).stdout)           # a gate: the rows it counts against
    assert out["gate"] == "holdout accuracy" and len(out["rows"]) == (3 if out["failing"] else 0)
    p = run(["blame", "wine", "--spec", "holdout acuracy"], wine, check=2)
    assert p.stderr == ("s2build: error: --spec holdout acuracy: target 'wine' has no example "
                        "or gate spec of that name (did you mean 'holdout accuracy'?)\n")


def test_dynamics_are_bounded_and_an_old_format_asks_for_a_rebuild(wine):
    run(["build"], wine, check=0)
    [path] = list((wine / ".s2build").rglob("dynamics.npz"))
    with np.load(path) as z:
        dyn = dict(z)
    assert int(dyn["version"]) == 2 and "grad_out" not in dyn and "loss" not in dyn
    c, n, da = dyn["grad_a"].shape
    assert dyn["grad_a"].dtype == dyn["grad_z"].dtype == np.float16 and da <= 64
    assert np.isfinite(dyn["grad_a"]).all() and np.isfinite(dyn["grad_z"]).all()
    assert dyn["margin_late"].shape == dyn["train_rows"].shape
    old = {k: v for k, v in dyn.items() if k not in ("version", "grad_z", "grad_a")}
    old["grad_out"] = np.zeros((c, n, 3), np.float32)      # version 1: full float32 factors
    old["grad_in"] = np.zeros((c, n, 8), np.float32)
    np.savez(path, **old)
    p = run(["blame", "wine", "--input", "data/wine-1.csv:6"], wine)
    assert p.returncode != 0 and "rebuild it" in p.stderr and "Traceback" not in p.stderr, p.stderr
