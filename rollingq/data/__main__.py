"""Decode a data set once into the cache, before (or instead of) the first trial doing it.

    python -m rollingq.data prepare --data.name cremad --data.root /data/CREMA-D
    python -m rollingq.data prepare --config run.yaml --data.decode_size 256 --verify
    python -m rollingq.data prepare --data.name cremad --data.root ROOT --from-videos

Any ``--data.KEY VALUE`` (or ``--data.KEY=VALUE``) sets that config key; ``--config`` reads a
YAML file first. ``--verify`` compares every cached file's checksum and rebuilds on a mismatch;
``--force`` rebuilds regardless. Trials that find the entry read it; trials that start while it
is being built wait for it. ``--from-videos`` first extracts the frames (and Kinetics-Sounds'
fbank arrays and split lists; CREMA-D's split lists when absent) from the downloaded videos
(``rollingq/data/videos.py``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from rollingq.config import REAL_DATASETS, ConfigError, build_config, parse_override
from rollingq.data import cache, cremad, kinetics_sounds, mosei, videos

PREPARERS = {"cremad": cremad.prepare, "kinetics_sounds": kinetics_sounds.prepare,
             "mosei": mosei.prepare}


def _overrides(extra: list[str]) -> dict[str, object]:
    """``--data.key value`` / ``--data.key=value`` pairs -> {"data.key": value}."""
    out, i = {}, 0
    while i < len(extra):
        arg = extra[i]
        if not arg.startswith("--data."):
            raise ConfigError(f"unknown argument {arg!r}; pass config keys as --data.KEY VALUE")
        if "=" in arg:
            key, value = arg[2:].split("=", 1)
            i += 1
        elif i + 1 < len(extra):
            key, value = arg[2:], extra[i + 1]
            i += 2
        else:
            raise ConfigError(f"{arg} needs a value, e.g. {arg} VALUE")
        out.update([parse_override(f"{key}={value}")])  # values parsed as YAML
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rollingq.data", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="decode a data set into the cache (once)")
    p.add_argument("--config", help="YAML file nested by group; its data group is used")
    p.add_argument("--verify", action="store_true", help="check checksums; rebuild if they differ")
    p.add_argument("--force", action="store_true", help="rebuild even if the entry is valid")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--from-videos", action="store_true",
                   help="first extract frames (and KS fbank arrays) from the raw videos")
    p.add_argument("--test-fraction", type=float, default=0.1,
                   help="CREMA-D lists written by --from-videos: the test share (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of those lists (default 0)")
    p.add_argument("--speaker-disjoint", action="store_true",
                   help="those lists put whole actors in test (ids start with the actor)")
    args, extra = ap.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = build_config(args.config, _overrides(extra)).data
        if cfg.name not in REAL_DATASETS:
            raise ConfigError(f"data.name={cfg.name!r} needs no preparing; the cached data sets "
                              f"are: {', '.join(REAL_DATASETS)}")
        began = time.perf_counter()
        progress = False if args.quiet else None
        if args.from_videos:
            if not 0 < args.test_fraction < 1:
                raise ConfigError(f"`0 < --test-fraction < 1` must hold, but got "
                                  f"{args.test_fraction}")
            for line in videos.from_videos(cfg, args.test_fraction, args.seed,
                                           args.speaker_disjoint, progress):
                print(f"{cfg.name}: {line}")
        entry = PREPARERS[cfg.name](cfg, progress=progress, force=args.force)
        if args.verify:
            problems = cache.verify(entry)
            for line in problems:
                print(f"checksum mismatch: {line}", file=sys.stderr)
            if problems:
                entry = PREPARERS[cfg.name](cfg, progress=progress, force=True)
    except (ConfigError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    state = "built" if entry.built else "reused"
    sizes = ", ".join(f"{s} {n}" for s, n in entry.info.get("sizes", {}).items())
    gib = cache.entry_bytes(entry) / 2**30
    print(f"{cfg.name}: {state} {entry.path} ({sizes}; {gib:.2f} GiB) in "
          f"{time.perf_counter() - began:.1f} s")
    if entry.info.get("dropped"):
        print(f"{cfg.name}: {entry.info['dropped']} samples dropped; ids and reasons in "
              f"{entry.path / 'dropped.tsv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
