"""Benchmark: import a synthetic national extraction of 536,000 rows (the real file's
size, 84 % PER / 16 % ORG, a few duplicated addresses), re-import it, then measure
the public search latency; on SQLite, then on PostgreSQL.

    python bench/directory_import.py [--rows N] [--sqlite-only | --postgres-only]
                                     [--postgres postgresql+asyncpg://…/db]
                                     [--keep] [--search-only]

Targets (issue 3): ≥ 20,000 rows/s on SQLite, peak RSS < 300 MB, search p95 < 50 ms.
Each database runs in a child process of its own, so that the peak RSS printed is
that import's. Without --postgres a scratch database is created on the local server
(127.0.0.1:5432, user postgres, as the tests) and dropped afterwards; a database
given must be empty (or a previous run's): it is migrated. --keep leaves the scratch
database in place (its URL is printed); --search-only with --postgres only measures the
search on a database a previous run imported (same --rows), to iterate on the search.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from directory.importers import import_file
from directory.importers.mssante import COLUMNS
from directory.search import DirectorySearch
from directory.text import fold
from mailserver.store.database import create_engine
from mailserver.store.migrate import upgrade

SYLLABLES = ["ber", "nard", "du", "pont", "mar", "tin", "le", "fe", "vre", "ro", "ux", "gar",
             "ci", "a", "mo", "rel", "lau", "rent", "fran", "cois", "gi", "rard", "bon", "net",
             "che", "val", "lier", "thi", "bault", "mi", "chel", "fau", "re", "ma", "thieu"]
GIVEN = ["Jean", "Marie", "Pierre", "Hélène", "Françoise", "Luc", "Camille", "Sophie", "Paul",
         "Chloé", "Louis", "Léa", "Hugo", "Inès", "Théo", "Zoé", "Nicolas", "Anaïs", "Marc",
         "Élodie", "Julien", "Manon", "Thomas", "Céline", "Antoine", "Laura", "Mathieu"]
PROFESSIONS = [("10", "Médecin", 40), ("60", "Infirmier", 20), ("21", "Pharmacien", 12),
               ("70", "Masseur-Kinésithérapeute", 10), ("40", "Chirurgien-Dentiste", 8),
               ("50", "Sage-Femme", 5), ("91", "Orthophoniste", 5)]
SPECIALTIES = [("SM04", "Cardiologie et maladies vasculaires"), ("SM54", "Médecine générale"),
               ("SM26", "Gynécologie-obstétrique"), ("SM42", "Pédiatrie"),
               ("SM33", "Psychiatrie"), ("SM38", "Radio-diagnostic"), ("SM15", "Dermatologie")]
CITIES = [("NANTES", "44"), ("LYON", "69"), ("PARIS", "75"), ("MARSEILLE", "13"),
          ("TOULOUSE", "31"), ("BORDEAUX", "33"), ("LILLE", "59"), ("RENNES", "35"),
          ("STRASBOURG", "67"), ("AJACCIO", "2A"), ("DIJON", "21"), ("BREST", "29"),
          ("ANGERS", "49"), ("NIMES", "30"), ("TOURS", "37"), ("LIMOGES", "87"),
          ("AMIENS", "80"), ("METZ", "57"), ("CAEN", "14"), ("ROUEN", "76")]
STREETS = ["de la République", "Victor Hugo", "du Général de Gaulle", "Pasteur", "Jean Jaurès",
           "des Lilas", "de la Gare", "Nationale", "du Moulin", "de l'Église"]
ORG_KINDS = ["CENTRE HOSPITALIER", "CLINIQUE", "CABINET MÉDICAL", "PHARMACIE",
             "MAISON DE SANTÉ", "LABORATOIRE", "EHPAD", "CENTRE DE SANTÉ"]
SERVICES = ["Cardiologie", "Urgences", "Pédiatrie", "Secrétariat", "Radiologie", "Maternité",
            "Oncologie", "Accueil", "Pharmacie", "Bloc opératoire"]


def family_names(rng: random.Random, count: int) -> list[str]:
    names = set()
    while len(names) < count:
        names.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).upper())
    return sorted(names)


def generate(path: Path, rows: int, seed: int = 3) -> list[tuple[str, str, str]]:
    """Write the file; return a sample of (family name, profession, city) for searches."""
    rng = random.Random(seed)
    families = family_names(rng, 30000)
    organisations = []
    for n in range(max(rows // 12, 10)):
        city, department = rng.choice(CITIES)
        postal = f"{department.replace('2A', '20')}{rng.randint(0, 9)}{rng.randint(0, 9)}0"
        organisations.append((
            "1", f"{n:09d}", f"{rng.choice(ORG_KINDS)} {rng.choice(families)}",
            ("", "", str(rng.randint(1, 200)), "", "Rue", rng.choice(STREETS), "",
             f"{postal} {city}"), postal, department))
    weights = [w for _, _, w in PROFESSIONS]
    sample: list[tuple[str, str, str]] = []
    previous = ""
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("|".join(COLUMNS) + "\r\n")
        for n in range(rows):
            org_type, org_id, org_name, lines, postal, department = rng.choice(organisations)
            if n % 100 < 84:
                code, label, _ = rng.choices(PROFESSIONS, weights)[0]
                spec = rng.choice(SPECIALTIES) if code == "10" else ("", "")
                family, given = rng.choice(families), rng.choice(GIVEN)
                pp = f"{10000000000 + n}"
                address = f"{fold(given)}.{family.lower()}.{n}@pro.mssante.example"
                if n % 50000 == 7 and n > 10:  # a few addresses appear twice
                    address = previous
                previous = address
                fields = ["PER", address, "8", pp, "8" + pp, org_type, org_id,
                          rng.choice(SERVICES) if n % 3 == 0 else "", "Dr", family, given,
                          "C", "Civil", code, label, *spec, "true", org_name, "", *lines,
                          postal, department, "France"]
                if n % 997 == 0:
                    sample.append((family, label, lines[-1].split()[-1]))
            else:
                service = rng.choice(SERVICES)
                fields = ["ORG", f"service.{n}@org.mssante.example", "", "", "",
                          org_type, org_id, service, "", "", "", "", "", "", "", "", "",
                          "false", org_name, "", *lines, postal, department, "France"]
            out.write("|".join(fields) + "\r\n")
    return sample


async def run(url: str, path: Path, rows: int, sample: list[tuple[str, str, str]],
              search_only: bool = False) -> None:
    engine = create_engine(url, sqlite_synchronous="NORMAL")
    try:
        await upgrade(engine)
        for label in () if search_only else ("first import", "re-import (no change)"):
            started, cpu = time.monotonic(), _cpu_seconds()
            report = await import_file(engine, path)
            seconds, cpu = time.monotonic() - started, _cpu_seconds() - cpu
            print(f"  {label:22} {seconds:6.1f} s  {rows / seconds:9,.0f} rows/s  "
                  f"(CPU {cpu:.1f} s; added {report.added:,}, updated {report.updated:,}, "
                  f"unchanged {report.unchanged:,}, rejected {report.rejected_count})")
            PARSER_PEAKS.append(report.parse_process_peak_rss)
        search = DirectorySearch(engine)
        queries = []
        for family, profession, city in sample:
            queries += [family.lower(), f"{family} {city}", f"{family[:4]} {profession}",
                        f"{profession} {city}", f"{profession[:5]} {city[:3]}"]
        queries += ["cardio nantes", "pharmacie lyon", "urgences", "m", "sage femme paris"]
        for query in queries[:20]:  # warm the caches
            await search.search(query)
        latencies = []
        for query in queries:
            started = time.perf_counter()
            await search.search(query)
            latencies.append((time.perf_counter() - started) * 1000)
        latencies.sort()
        p50 = latencies[len(latencies) // 2]
        p95 = latencies[int(len(latencies) * 0.95)]
        print(f"  search: {len(latencies)} queries  p50 {p50:.1f} ms  p95 {p95:.1f} ms  "
              f"max {latencies[-1]:.1f} ms")
    finally:
        await engine.dispose()


def _cpu_seconds() -> float:
    """This process's CPU time and that of its parsing processes (once they ended)."""
    return sum(usage.ru_utime + usage.ru_stime for usage in (
        resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)))


PARSER_PEAKS: list[int] = []  # peak RSS of each import's parsing process, bytes
LOCAL_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432"


async def _admin(statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(LOCAL_POSTGRES.replace("+asyncpg", "") + "/postgres")
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def _child(label: str, url: str, path: Path, rows: int,
           sample: list[tuple[str, str, str]], search_only: bool) -> None:
    print(f"{label}:", flush=True)
    asyncio.run(run(url, path, rows, sample, search_only))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # The parsing process of a big file (directory/importers/parse_process.py) runs
    # beside this one: its peak is added, an upper bound of the two together. (Not
    # RUSAGE_CHILDREN: Linux counts there this process's own peak, as of the fork.)
    child_mb = max(PARSER_PEAKS, default=0) / 1024 / 1024
    print(f"  peak RSS {peak_mb:.0f} MB (this process: generator sample, import, search) "
          f"+ {child_mb:.0f} MB (parsing process) = {peak_mb + child_mb:.0f} MB", flush=True)


def _in_child(label: str, url: str, path: Path, rows: int,
              sample: list[tuple[str, str, str]], search_only: bool = False) -> None:
    process = multiprocessing.get_context("fork").Process(
        target=_child, args=(label, url, path, rows, sample, search_only))
    process.start()
    process.join()
    if process.exitcode:
        sys.exit(f"{label} run failed (exit code {process.exitcode})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=536_000)
    parser.add_argument("--postgres", help="PostgreSQL database to use (asyncpg URL; "
                                           "default: a scratch database on 127.0.0.1)")
    parser.add_argument("--sqlite-only", action="store_true", help="skip PostgreSQL")
    parser.add_argument("--postgres-only", action="store_true", help="skip SQLite")
    parser.add_argument("--keep", action="store_true",
                        help="keep the scratch PostgreSQL database (for --search-only)")
    parser.add_argument("--search-only", action="store_true",
                        help="no import: measure the search on --postgres (imported before)")
    options = parser.parse_args()
    if options.search_only and not options.postgres:
        parser.error("--search-only needs --postgres (a database a previous run imported)")
    print(f"load average before the run {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
          f"on {os.cpu_count()} CPUs", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "Extraction_Correspondance_MSSante.csv"
        started = time.monotonic()
        sample = generate(path, options.rows)
        print(f"generated {options.rows:,} rows ({path.stat().st_size / 1e6:.0f} MB) in "
              f"{time.monotonic() - started:.1f} s", flush=True)
        if not (options.postgres_only or options.search_only):
            _in_child("SQLite", f"sqlite+aiosqlite:///{Path(tmp) / 'bench.sqlite3'}", path,
                      options.rows, sample)
        if not options.sqlite_only:
            scratch = None
            url = options.postgres
            if url is None:
                scratch = f"bench_directory_{os.getpid()}"
                asyncio.run(_admin(f'CREATE DATABASE "{scratch}"'))
                url = f"{LOCAL_POSTGRES}/{scratch}"
            try:
                _in_child("PostgreSQL", url, path, options.rows, sample, options.search_only)
            finally:
                if scratch and options.keep:
                    print(f"kept {url}")
                elif scratch:
                    asyncio.run(_admin(f'DROP DATABASE "{scratch}"'))
    print(f"load average after the run {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
          f"on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
