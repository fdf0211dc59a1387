"""Plot rounds.tsv (the active-learning loop's test error per round) to errors.png.

    python plot_rounds.py rounds.tsv errors.png
"""
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

rows = [line.split("\t") for line in open(sys.argv[1]).read().splitlines()[1:]]
r = np.array([int(x[0]) for x in rows])
energy = np.array([float(x[2]) for x in rows])
forces = np.array([float(x[3]) for x in rows])
fig, ax = plt.subplots(figsize=(5, 3.4), dpi=100)
ax.semilogy(r, energy, "o-", label="energy RMSE (meV/atom)")
ax.semilogy(r, forces * 1000, "s-", label="force RMSE (meV/Å)")
for x, row in zip(r, rows, strict=True):
    ax.annotate(f"n={row[1]}\n{row[5].strip()}", (x, energy[x == r][0]), fontsize=7,
                textcoords="offset points", xytext=(4, 6))
ax.set_xlabel("round")
ax.set_xticks(r)
ax.set_ylabel("test error")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(sys.argv[2])
