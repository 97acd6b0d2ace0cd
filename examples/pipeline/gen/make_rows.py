"""Writes the pipeline example's table: 3 classes of points on noisy rings in the plane, two
columns of noise, and a category column that carries no signal. Seeded: the same bytes on
every machine. Usage: python gen/make_rows.py OUT.csv [N]"""

import math
import random
import sys


def main(out, n=1500):
    rng = random.Random(7)
    with open(out, "w") as f:
        f.write("x,y,noise1,noise2,colour,ring\n")
        for _ in range(n):
            ring = rng.randrange(3)
            r = 1.0 + ring + rng.gauss(0, 0.22)
            a = rng.uniform(0, 2 * math.pi)
            colour = rng.choice(["red", "green", "blue"])
            f.write(f"{r * math.cos(a):.4f},{r * math.sin(a):.4f},{rng.gauss(0, 1):.4f},"
                    f"{rng.uniform(-2, 2):.4f},{colour},ring{ring}\n")


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:]))
