"""Golden check: every result analysis and the store produce, as one canonical JSON.

Performance work must not change a single result. This script runs the codec
(``decode_measurement``, ``measurement_uid``, ``encode_measurement``) and
``netvigil.analysis.analyze`` — with the real fingerprints and without any —
over every file under ``../shared/data/ooni/measurements``, and (with
``--store``) imports them all into a fresh DuckDB store and dumps its three
tables. Every field of every observation and verdict is written, defaults
included, in the order analysis made them; keys are sorted.

Run it before a change, keep the output, run it again after and compare:

  python bench/golden.py --store -o /tmp/golden-before.json
  python bench/golden.py --store -o /tmp/golden-after.json --compare /tmp/golden-before.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import msgspec

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "ooni"

# Columns that differ between any two imports by design.
_VOLATILE_COLUMNS = {"import_run_id", "imported_at", "source_path"}


def _row(struct: msgspec.Struct) -> dict[str, Any]:
    """Every field (defaults too), so a field that changes from None to a default shows."""
    return msgspec.to_builtins(msgspec.structs.asdict(struct))


def analysis_results(files: list[Path]) -> dict[str, Any]:
    from netvigil.analysis import ANALYSED_TESTS, analyze
    from netvigil.analysis.fingerprints import EMPTY
    from netvigil.codec import BadRecord, decode_measurement, encode_measurement
    from netvigil.tasks.fingerprints import load_fingerprints

    fps = load_fingerprints(SHARED / "fingerprints")
    out: dict[str, Any] = {}
    for path in files:
        name = str(path.relative_to(SHARED / "measurements"))
        raw = path.read_bytes()
        try:
            m = decode_measurement(raw)
        except BadRecord as exc:
            out[name] = {"bad_record": exc.reason.value, "detail": exc.detail}
            continue
        entry: dict[str, Any] = {
            "uid": m.uid,
            "test_name": m.test_name,
            "input": m.input,
            "envelope": {f: msgspec.to_builtins(getattr(m.envelope, f))
                         for f in m.envelope.__struct_fields__ if f != "test_keys"},
            "test_keys_type": type(m.test_keys).__name__,
            "test_keys": msgspec.to_builtins(m.test_keys),
            # The exact bytes (key order included), as text.
            "encoded": encode_measurement(m).decode("utf-8"),
        }
        for label, db in (("fingerprints", fps), ("no_fingerprints", EMPTY)):
            observations, verdicts = analyze(m, db)
            entry[label] = {
                "observations": [_row(o) for o in observations],
                "verdicts": [_row(v) for v in verdicts],
            }
        # The importer decodes test keys only for tests analysis reads: that must not change a result.
        lean = decode_measurement(raw, test_keys_for=ANALYSED_TESTS)
        lean_obs, lean_verdicts = analyze(lean, fps)
        if lean.uid != m.uid or ([_row(o) for o in lean_obs], [_row(v) for v in lean_verdicts]) != (
                entry["fingerprints"]["observations"], entry["fingerprints"]["verdicts"]):
            entry["lean_decode_differs"] = True
        out[name] = entry
    return out


def store_results(files: list[Path]) -> dict[str, Any]:
    """Import every file into a fresh store; the tables' rows, ordered by their keys."""
    from netvigil.store import open_store
    from netvigil.store.schema import TABLES
    from netvigil.tasks.fingerprints import load_fingerprints
    from netvigil.tasks.importing import MakeImportParams, make_import

    fps = load_fingerprints(SHARED / "fingerprints")
    with tempfile.TemporaryDirectory(prefix="nv-golden-") as tmp:
        work = Path(tmp)
        with open_store(work / "golden.duckdb") as store:
            # Small batches so batching, grouping and the writer thread all take part.
            summary = make_import(MakeImportParams(paths=files, store=store, fingerprints=fps,
                                                   quarantine_dir=work / "q", batch_size=7))
            tables: dict[str, Any] = {}
            for name, spec in TABLES.items():
                cols = [c for c in spec.column_names if c not in _VOLATILE_COLUMNS and c != "raw"]
                order = ", ".join(spec.sort_key or (spec.primary_key,))
                rows = store._con.execute(f"SELECT {', '.join(cols)} FROM {name} ORDER BY {order}").fetchall()
                tables[name] = [dict(zip(cols, (_plain(v) for v in row))) for row in rows]
            raws = {r["uid"]: (store.get_raw(r["uid"]) or b"").decode("utf-8", "replace")
                    for r in tables["measurements"]}
    counts = summary.as_dict()
    for volatile in ("run_id", "seconds", "measurements_per_second", "quarantine_file"):
        counts.pop(volatile, None)
    return {"summary": counts, "tables": tables, "raw": raws}


def _plain(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _first_difference(a: Any, b: Any, where: str = "") -> str | None:
    if type(a) is not type(b):
        return f"{where}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, dict):
        if list(a) != list(b):
            return f"{where}: keys {sorted(set(a) ^ set(b))[:10]}"
        for k in a:
            d = _first_difference(a[k], b[k], f"{where}/{k}")
            if d:
                return d
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{where}: {len(a)} items vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            d = _first_difference(x, y, f"{where}[{i}]")
            if d:
                return d
        return None
    return None if a == b else f"{where}: {a!r:.200} vs {b!r:.200}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--store", action="store_true", help="also import everything and dump the store's tables")
    ap.add_argument("--compare", type=Path, help="a previous output: exit 1 and name the first difference")
    args = ap.parse_args()
    files = sorted(p for p in (SHARED / "measurements").rglob("*") if p.is_file())
    if not files:
        sys.exit(f"no measurements under {SHARED}")
    result: dict[str, Any] = {"analysis": analysis_results(files)}
    if args.store:
        result["store"] = store_results(files)
    text = json.dumps(result, sort_keys=True, indent=1, ensure_ascii=False)
    args.output.write_text(text)
    n_obs = sum(len(e["fingerprints"]["observations"]) for e in result["analysis"].values() if "uid" in e)
    n_ver = sum(len(e["fingerprints"]["verdicts"]) for e in result["analysis"].values() if "uid" in e)
    print(f"{len(files)} files, {n_obs} observations, {n_ver} verdicts -> {args.output}")
    if args.compare:
        before = json.loads(args.compare.read_text())
        after = json.loads(text)
        if "store" in before and "store" not in after:
            before.pop("store")
        diff = _first_difference(before, after)
        if diff:
            print(f"DIFFERENT from {args.compare}: {diff}")
            sys.exit(1)
        print(f"identical to {args.compare}")


if __name__ == "__main__":
    main()
