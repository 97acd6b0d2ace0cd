"""Generate the Game of Life example data: (board, next board) pairs on an 8x8 torus.

The `boards` rule of examples/life/s2build.yaml runs it (from examples/life):

    python gen/make_life.py boards data/boards.jsonl     training pairs (seeded, deterministic)
    python gen/make_life.py patterns data/patterns.jsonl ~50 hand-chosen named patterns
                                                         (committed: the specs name its lines)

Each line is {"board": "<64 chars of 0/1, row-major>", "next": "<64 chars>"} (patterns.jsonl adds
"name"). Edges wrap around: row 0 neighbours row 7 and column 0 neighbours column 7.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

N = 8
SEED = 20250101

N_RANDOM = 2600     # uniform random boards, density ~ U(0.1, 0.6)
N_PATTERN = 1000    # 1-4 known patterns at random positions/orientations, some with sparse noise
N_EVOLVED = 600     # random boards run forward 1-12 steps (the "natural" sparse, structured look)


def life_step(board: np.ndarray) -> np.ndarray:
    """One Game of Life step (B3/S23) on a toroidal board. Pure: returns a new uint8 array."""
    b = np.asarray(board, dtype=np.uint8)
    n = sum(np.roll(np.roll(b, dr, axis=0), dc, axis=1)
            for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0))
    return ((n == 3) | ((b == 1) & (n == 2))).astype(np.uint8)


def encode(board: np.ndarray) -> str:
    return "".join("1" if v else "0" for v in np.asarray(board).reshape(-1))


def decode(s: str) -> np.ndarray:
    return np.array([int(ch) for ch in s], dtype=np.uint8).reshape(N, N)


def shape(rows: list[str]) -> np.ndarray:
    return np.array([[1 if ch == "O" else 0 for ch in r] for r in rows], dtype=np.uint8)


def place(shapes: list[np.ndarray], at: list[tuple[int, int]]) -> np.ndarray:
    """OR shapes onto an empty board, top-left corner at (row, col), wrapping around the edges."""
    b = np.zeros((N, N), dtype=np.uint8)
    for s, (r, c) in zip(shapes, at):
        tile = np.zeros((N, N), dtype=np.uint8)
        tile[: s.shape[0], : s.shape[1]] = s
        b |= np.roll(np.roll(tile, r, axis=0), c, axis=1)
    return b


# Shapes (phase 1). 'O' = live.
SHAPES = {
    "block": shape(["OO", "OO"]),
    "beehive": shape([".OO.", "O..O", ".OO."]),
    "loaf": shape([".OO.", "O..O", ".O.O", "..O."]),
    "boat": shape(["OO.", "O.O", ".O."]),
    "ship": shape(["OO.", "O.O", ".OO"]),
    "tub": shape([".O.", "O.O", ".O."]),
    "pond": shape([".OO.", "O..O", "O..O", ".OO."]),
    "blinker": shape(["OOO"]),
    "toad": shape([".OOO", "OOO."]),
    "beacon": shape(["OO..", "OO..", "..OO", "..OO"]),
    "glider": shape([".O.", "..O", "OOO"]),          # moves down-right (south-east)
    "lwss": shape([".O..O", "O....", "O...O", "OOOO."]),  # lightweight spaceship, moves left
    "r-pentomino": shape([".OO", "OO.", ".O."]),
    "pi-heptomino": shape(["OOO", "O.O", "O.O"]),
    "b-heptomino": shape(["O.OO", "OOO.", ".O.."]),
    "diehard": shape(["......O.", "OO......", ".O...OOO"]),
}


def orientations(s: np.ndarray) -> list[np.ndarray]:
    out = []
    for k in range(4):
        r = np.rot90(s, k)
        out += [r, r[:, ::-1]]
    return out


def named_patterns() -> list[tuple[str, np.ndarray]]:
    """About 50 hand-chosen boards, each with a descriptive name."""
    S = SHAPES
    pats: list[tuple[str, np.ndarray]] = []
    # Edge cases.
    pats.append(("empty", np.zeros((N, N), np.uint8)))
    pats.append(("full", np.ones((N, N), np.uint8)))
    pats.append(("single-cell", place([shape(["O"])], [(3, 3)])))
    pats.append(("domino", place([shape(["OO"])], [(3, 3)])))
    pats.append(("checkerboard", (np.indices((N, N)).sum(0) % 2).astype(np.uint8)))
    pats.append(("stripes-h", np.repeat((np.arange(N) % 2)[:, None], N, 1).astype(np.uint8)))
    pats.append(("stripes-v", np.repeat((np.arange(N) % 2)[None, :], N, 0).astype(np.uint8)))
    pats.append(("row-full", place([np.ones((1, N), np.uint8)], [(4, 0)])))
    # Still lifes.
    for nm in ["block", "beehive", "loaf", "boat", "ship", "tub", "pond"]:
        pats.append((nm, place([S[nm]], [(2, 2)])))
    pats.append(("beehive-vertical", place([S["beehive"].T], [(2, 2)])))
    pats.append(("block-across-edge", place([S["block"]], [(3, 7)])))
    pats.append(("block-across-corner", place([S["block"]], [(7, 7)])))
    pats.append(("two-blocks", place([S["block"], S["block"]], [(1, 1), (5, 5)])))
    # Oscillators, both phases.
    for nm in ["blinker", "toad", "beacon"]:
        b = place([S[nm]], [(3, 2)])
        pats.append((f"{nm}-1", b))
        pats.append((f"{nm}-2", life_step(b)))
    pats.append(("blinker-across-edge", place([S["blinker"]], [(0, 6)])))
    pats.append(("blinker-vertical-across-edge", place([S["blinker"].T], [(7, 4)])))
    # Gliders: the four phases of a south-east glider, then phase 1 of the other three headings.
    g = place([S["glider"]], [(1, 1)])
    for k in range(4):
        pats.append((f"glider-{k + 1}", g))
        g = life_step(g)
    for nm, s in [("glider-sw", S["glider"][:, ::-1]), ("glider-ne", S["glider"][::-1, :]),
                  ("glider-nw", S["glider"][::-1, ::-1])]:
        pats.append((nm, place([s], [(2, 3)])))
    pats.append(("glider-across-corner", place([S["glider"]], [(6, 6)])))
    # Lightweight spaceship, four phases (it fits on the 8x8 torus: after 4 steps it is the
    # same shape two columns to the left).
    w = place([S["lwss"]], [(2, 2)])
    for k in range(4):
        pats.append((f"lwss-{k + 1}", w))
        w = life_step(w)
    # Methuselahs and other short-lived seeds.
    for nm in ["r-pentomino", "pi-heptomino", "b-heptomino"]:
        pats.append((nm, place([S[nm]], [(3, 3)])))
    pats.append(("diehard", place([S["diehard"]], [(3, 0)])))
    pats.append(("lwss-vertical", place([S["lwss"].T], [(2, 2)])))
    pats.append(("toad-vertical", place([S["toad"].T], [(2, 3)])))
    pats.append(("boat-rotated", place([np.rot90(S["boat"])], [(4, 1)])))
    pats.append(("tub-across-edge", place([S["tub"]], [(6, 2)])))
    pats.append(("block-and-beehive", place([S["block"], S["beehive"]], [(0, 0), (4, 3)])))
    pats.append(("glider-meets-block", place([S["glider"], S["block"]], [(0, 0), (4, 4)])))
    pats.append(("glider-meets-blinker", place([S["glider"], S["blinker"].T], [(0, 0), (3, 5)])))
    return [(nm, b) for nm, b in pats]


def pattern_board(rng: np.random.Generator) -> np.ndarray:
    names = list(SHAPES)
    k = int(rng.integers(1, 5))
    shapes, at = [], []
    for _ in range(k):
        s = SHAPES[names[rng.integers(len(names))]]
        o = orientations(s)
        s = o[rng.integers(len(o))]
        # Advance a random number of steps in isolation for oscillators / spaceships phases.
        if s.shape[0] <= 5 and s.shape[1] <= 5 and rng.random() < 0.5:
            tile = place([s], [(1, 1)])
            for _ in range(int(rng.integers(1, 4))):
                tile = life_step(tile)
            s = tile
        shapes.append(s)
        at.append((int(rng.integers(N)), int(rng.integers(N))))
    b = place(shapes, at)
    if rng.random() < 0.3:  # sprinkle a little noise
        b |= (rng.random((N, N)) < rng.uniform(0.02, 0.08)).astype(np.uint8)
    return b


def boards() -> list[tuple[str, str]]:
    """The training pairs, deduplicated by board, in a seeded order."""
    rng = np.random.default_rng(SEED)
    boards: list[np.ndarray] = []
    for _ in range(N_RANDOM):
        boards.append((rng.random((N, N)) < rng.uniform(0.1, 0.6)).astype(np.uint8))
    for _ in range(N_PATTERN):
        boards.append(pattern_board(rng))
    for _ in range(N_EVOLVED):
        b = (rng.random((N, N)) < rng.uniform(0.2, 0.6)).astype(np.uint8)
        for _ in range(int(rng.integers(1, 13))):
            b = life_step(b)
        boards.append(b)
    # Interleave the three kinds (deterministic shuffle) and drop duplicate boards.
    order = rng.permutation(len(boards))
    seen: set[str] = set()
    out = []
    for i in order:
        s = encode(boards[i])
        if s not in seen:
            seen.add(s)
            out.append((s, encode(life_step(boards[i]))))
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("boards", "patterns"):
        print("usage: make_life.py boards|patterns OUT.jsonl", file=sys.stderr)
        return 2
    what, out = argv
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="\n") as f:
        if what == "boards":
            pairs = boards()
            for s, nxt in pairs:
                f.write(json.dumps({"board": s, "next": nxt}) + "\n")
            n = len(pairs)
        else:
            pats = named_patterns()
            for nm, b in pats:
                f.write(json.dumps({"name": nm, "board": encode(b),
                                    "next": encode(life_step(b))}) + "\n")
            n = len(pats)
    print(f"wrote {n} {what} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
