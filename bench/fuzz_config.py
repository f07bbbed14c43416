"""Config-file fuzzing at full strength: 10,000 hypothesis cases per property (structural and textual
mutations of the example site). Prints cases, outcomes and wall time.

    .venv/bin/python bench/fuzz_config.py [--cases N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cases", type=int, default=10_000)
    args = ap.parse_args()
    os.environ["EDGECTL_FUZZ_PROFILE"] = "bench"
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fuzz"))
    import test_config_fuzz as t
    from hypothesis import given, settings
    from hypothesis import strategies as st

    settings.register_profile("bench", max_examples=args.cases, deadline=None, database=None)
    rows = []
    for name, fn in (("structural", t.test_structural_mutations_never_crash),
                     ("text", t.test_text_mutations_never_crash)):
        inner = fn.hypothesis.inner_test
        t0 = time.perf_counter()
        before = dict(t.COUNTS)
        strategy = t.mutated() if name == "structural" else st.data()
        run = settings(settings.get_profile("bench"))(given(strategy)(inner))
        run()
        dt = time.perf_counter() - t0
        got = {k: v - before.get(k, 0) for k, v in t.COUNTS.items() if k.startswith(name)}
        rows.append((name, sum(got.values()), got.get(f"{name}:valid", 0), got.get(f"{name}:invalid", 0), dt))
    print(f"{'property':<12} {'cases':>7} {'valid':>7} {'ConfigError':>12} {'wall s':>8} {'ms/case':>8}")
    for name, n, v, i, dt in rows:
        print(f"{name:<12} {n:>7} {v:>7} {i:>12} {dt:>8.1f} {1000 * dt / max(n, 1):>8.2f}")
    print("crashes: 0 (any other exception would have stopped the run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
