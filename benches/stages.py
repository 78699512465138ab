"""Splits a `perf record --call-graph` profile of the server by pipeline stage.

    perf script -i target/profile-1.perf -F comm,ip,sym | python3 benches/stages.py

Each sample goes to the first stage (in the order below) one of whose functions is on its
stack; the shares are of all the server's samples.
"""
import collections
import sys

STAGES = [
    ("store commit (the store's group-commit leader)", "store::embedded::Leader"),
    ("log writer threads (append + fsync)", "group_commit::run"),
    ("ledger writer (without the store commit)", "ledger_writer::"),
    ("raters", "rater::"),
    ("HTTP + ingest handler", "hyper::proto"),
    ("tokio scheduler", "tokio::runtime"),
]


def samples(lines):
    """Yields the frames of each sample of `perf script` output (a header line, then frames)."""
    frames = None
    for line in lines:
        if not line.strip():
            continue
        if line[0] not in " \t":
            if frames is not None:
                yield frames
            frames = []
        elif frames is not None:
            parts = line.split(None, 1)
            frames.append(parts[1].strip() if len(parts) > 1 else parts[0])
    if frames is not None:
        yield frames


def main():
    counts = collections.Counter()
    total = 0
    for frames in samples(sys.stdin):
        total += 1
        stage = next((name for name, key in STAGES if any(key in f for f in frames)), "other")
        counts[stage] += 1
    if not total:
        sys.exit("no samples on stdin")
    for name, _ in STAGES + [("other", None)]:
        print(f"{100 * counts[name] / total:6.2f}%  {name}")


if __name__ == "__main__":
    main()
