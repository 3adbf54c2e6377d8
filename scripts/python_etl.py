#!/usr/bin/env python3
"""The plain Python ETL that tidig's SQLite ingest is compared with.

What a data engineer would write in an afternoon to load FHIR R4 NDJSON into SQLite:
orjson to parse each line, HMAC-SHA256 of the national identifier as the pseudonym and of
each resource id as its record key, `executemany` into a SQLite file, one transaction per
file, `INSERT OR IGNORE` on the record key so a re-run adds nothing. It validates
nothing (no check digit, no dates, no codes), keeps no vault, no quarantine, no pending
events and no audit trail, so it does less than `tidig ingest` does.

    python3 -m venv .venv && .venv/bin/pip install -r scripts/requirements.txt
    .venv/bin/python scripts/python_etl.py target/bench-data/synth-100000-seed42/health

Prints one JSON object: FHIR resources, seconds spent in the FHIR files, resources/s.
"""

import argparse
import hashlib
import hmac
import json
import os
import sqlite3
import sys
import tempfile
import time

import orjson

KEY = b"python-etl-benchmark-key-32bytes"
CHUNK = 10_000


def key63(tag: bytes) -> int:
    return int.from_bytes(hmac.new(KEY, tag, hashlib.sha256).digest()[:8], "big") >> 1


def connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS persons (id INTEGER PRIMARY KEY, pseudonym TEXT NOT NULL, "
        "birth_date TEXT, sex TEXT)"
    )
    db.execute(
        "CREATE TABLE IF NOT EXISTS events (record_key INTEGER PRIMARY KEY, "
        "person_id INTEGER NOT NULL, kind TEXT NOT NULL, system TEXT, code TEXT, "
        "start_time TEXT, value REAL)"
    )
    return db


def coding(concept):
    for c in (concept or {}).get("coding", []):
        return c.get("system"), c.get("code")
    return None, None


def event(r, patients):
    kind = r["resourceType"]
    ref = (r.get("subject") or r.get("patient") or {}).get("reference", "")
    person = patients.get(ref.rsplit("/", 1)[-1])
    if person is None:
        return None
    if kind == "Encounter":
        system, code = coding((r.get("type") or [{}])[0])
        start = (r.get("period") or {}).get("start")
        value = None
    elif kind == "Condition":
        system, code = coding(r.get("code"))
        start, value = r.get("onsetDateTime"), None
    elif kind == "Observation":
        system, code = coding(r.get("code"))
        start = r.get("effectiveDateTime")
        value = (r.get("valueQuantity") or {}).get("value")
    elif kind == "Immunization":
        system, code = coding(r.get("vaccineCode"))
        start, value = r.get("occurrenceDateTime"), None
    elif kind == "MedicationRequest":
        system, code = coding(r.get("medicationCodeableConcept"))
        start, value = r.get("authoredOn"), None
    else:
        return None
    return (key63(r["id"].encode()), person, kind, system, code, start, value)


def load(db, path, patients):
    rows, persons, n = [], [], 0
    db.execute("BEGIN")
    with open(path, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            r = orjson.loads(line)
            n += 1
            if r.get("resourceType") == "Patient":
                ident = next(iter(r.get("identifier") or []), {}).get("value", r["id"])
                pid = key63(ident.encode())
                patients[r["id"]] = pid
                pseudonym = hmac.new(KEY, ident.encode(), hashlib.sha256).hexdigest()
                persons.append((pid, pseudonym, r.get("birthDate"), r.get("gender")))
            else:
                e = event(r, patients)
                if e is not None:
                    rows.append(e)
            if len(rows) >= CHUNK:
                db.executemany("INSERT OR IGNORE INTO events VALUES (?,?,?,?,?,?,?)", rows)
                rows.clear()
            if len(persons) >= CHUNK:
                db.executemany("INSERT OR IGNORE INTO persons VALUES (?,?,?,?)", persons)
                persons.clear()
    db.executemany("INSERT OR IGNORE INTO events VALUES (?,?,?,?,?,?,?)", rows)
    db.executemany("INSERT OR IGNORE INTO persons VALUES (?,?,?,?)", persons)
    db.execute("COMMIT")
    return n


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("dir", help="a directory of FHIR NDJSON files (Patient files first)")
    p.add_argument("--db", help="SQLite file (default: a temporary one)")
    a = p.parse_args()
    files = sorted(
        (os.path.join(a.dir, f) for f in os.listdir(a.dir) if f.endswith(".ndjson")),
        key=lambda f: (not os.path.basename(f).startswith("Patient"), f),
    )
    files = [f for f in files if not os.path.basename(f).startswith("log")]
    tmp = tempfile.TemporaryDirectory()
    db = connect(a.db or os.path.join(tmp.name, "etl.db"))
    patients, total, started = {}, 0, time.perf_counter()
    for f in files:
        total += load(db, f, patients)
    seconds = time.perf_counter() - started
    events = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    json.dump(
        {
            "fhir_resources": total,
            "events": events,
            "seconds": round(seconds, 3),
            "fhir_resources_per_second": round(total / seconds),
            "python": sys.version.split()[0],
            "orjson": orjson.__version__,
            "sqlite": sqlite3.sqlite_version,
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
