"""Analysis of structures and trajectories (g(r), coordination, bond angles, rings)."""
