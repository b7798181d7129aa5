"""CPU cost of RetryPolicy.call around a call that succeeds at once: what every request
pays for the retry loop. Measured in CPU time (time.process_time) so a busy machine skews
it less than wall time; the figure is the best of several rounds.

    python bench/retry_overhead.py [--calls 20000] [--rounds 7]
"""

import argparse
import time

from cowork_llm.config import RetryConfig
from cowork_llm.retry import RetryPolicy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    policy = RetryPolicy(RetryConfig())

    def succeed() -> str:
        return "ok"

    best_bare = best_policy = float("inf")
    for _ in range(args.rounds):
        started = time.process_time()
        for _ in range(args.calls):
            succeed()
        best_bare = min(best_bare, time.process_time() - started)
        started = time.process_time()
        for _ in range(args.calls):
            policy.call(succeed, model="m", prompt_hash="h")
        best_policy = min(best_policy, time.process_time() - started)
    per_call = (best_policy - best_bare) / args.calls * 1e6
    print(f"RetryPolicy.call overhead: {per_call:.2f} us CPU per successful call "
          f"(best of {args.rounds} rounds x {args.calls} calls)")


if __name__ == "__main__":
    main()
