"""``hinterval data list | download | check``: the benchmarks' data, fetched and checked without training."""
from __future__ import annotations

import argparse
import sys
from typing import Any, List, Optional

from hinterval.data.common import default_data_dir
from hinterval.data.sources import BENCHMARK_DATA, DATASET_KEYS, benchmarks_of, dataset_of, source
from hinterval.errors import EXIT_INTERRUPTED, DataError, Stopped

NAMES_HELP = (f"benchmark ({', '.join(BENCHMARK_DATA)}) or data set ({', '.join(DATASET_KEYS)}); "
              "several may be given")


def add_data_parser(sub: Any, debug: dict) -> None:
    """Register ``hinterval data`` on the main parser's sub-commands."""
    d = sub.add_parser("data", help="list, download or check the benchmarks' data",
                       description="The benchmarks' data: where it comes from (official URLs, sizes, MD5 sums), fetched "
                       "into the layout the loaders read (checksums verified, unpacked atomically, resumable), and "
                       "checked without training. docs/data.md explains it.")
    dsub = d.add_subparsers(dest="data_command", required=True, parser_class=type(d))
    dl = dsub.add_parser("list", help="every benchmark with its source, size, checksum and where its data is found now")
    dl.add_argument("--data-dir", help="where to look (default: $HINTERVAL_DATA_DIR)")
    dd = dsub.add_parser("download", help="fetch data into --data-dir unless it is there")
    dd.add_argument("names", nargs="+", metavar="NAME", help=NAMES_HELP)
    dd.add_argument("--data-dir", help="where the data goes (default: $HINTERVAL_DATA_DIR)")
    dd.add_argument("--no-progress", action="store_true", help="no progress bars")
    dc = dsub.add_parser("check", help="read the data as training would (no training); exit 2 if it is missing or broken")
    dc.add_argument("names", nargs="+", metavar="NAME", help=NAMES_HELP)
    dc.add_argument("--data-dir", help="where the data is (default: $HINTERVAL_DATA_DIR)")
    for p in (dl, dd, dc):
        p.add_argument("--debug", **debug)


def cmd_data(args: argparse.Namespace) -> int:
    """Run ``hinterval data ...``: 0 done, 1 a download failed, 2 bad input or data missing/broken, 130 Ctrl-C."""
    if args.data_command == "list":
        return _list(args.data_dir)
    for name in args.names:
        dataset_of(name)  # every name checked before any work
    if args.data_command == "check":
        return _check(args.names, args.data_dir)
    from hinterval.data.download import ensure_data

    try:
        for name in args.names:
            found = ensure_data(name, args.data_dir, progress=not args.no_progress)
            print(f"{name}: {found if found is not None else 'embedded, nothing to download'}")
    except (KeyboardInterrupt, Stopped) as exc:
        how = f"stopped by {exc}" if isinstance(exc, Stopped) else "interrupted"
        print(f"hinterval: {how}; a partial download is kept as <file>.part and the same command resumes it",
              file=sys.stderr)
        return exc.exit_code if isinstance(exc, Stopped) else EXIT_INTERRUPTED
    return 0


def _check(names: List[str], data_dir: Optional[str]) -> int:
    from hinterval.data.download import locate
    from hinterval.data.registry import check_data

    for name in names:
        key = dataset_of(name)
        check_data(benchmarks_of(key)[0] if name in DATASET_KEYS else name, data_dir=data_dir)
        print(f"{name}: ok ({locate(key, data_dir) if key else 'embedded'})")
    return 0


def _list(data_dir: Optional[str]) -> int:
    from hinterval.data.download import locate

    embedded = [b for b, k in BENCHMARK_DATA.items() if k is None]
    print(f"{', '.join(embedded)}: embedded (scikit-learn's digits), nothing to download")
    for key in DATASET_KEYS:
        src = source(key)
        print(f"\n{key} ({src.title}; benchmarks: {', '.join(benchmarks_of(key))}), {src.size / 1e6:,.1f} MB, "
              f"lands in DIR/{src.folder}")
        for f in src.files:
            size = f"{f.size:,} bytes" if f.size is not None else "size unknown"
            print(f"  {f.filename}  {size}  md5 {f.md5}  {' | '.join(f.urls)}")
        try:
            where = f"found in {locate(key, data_dir)}"
        except DataError:
            looked = default_data_dir(data_dir)
            where = f"not found in {looked}" if looked else "not found (no --data-dir given)"
        print(f"  {where}")
    return 0
