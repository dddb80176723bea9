"""Readers for real interaction histories, turned into streamrec events.

- UCI Online Retail (CSV, optionally gzipped): purchases only. Kept: lines with a CustomerID,
  Quantity > 0, UnitPrice > 0, not a cancellation (InvoiceNo "C..."), and a StockCode that is a
  product (five digits plus optional letters: POST, DOT, M, BANK CHARGES, ... are fees, not goods).
  One event per (invoice, stock code); InvoiceDate is taken as UTC. Events are in time order and,
  within an invoice, in the order of its lines in the file: the order the items went into the
  cart (neighbouring lines are related: three colours of one alarm clock, then lunch boxes), which
  is the order a live shop would have sent them.
- OTTO (JSONL, one session per line): session = user; clicks -> click, carts -> add_to_cart,
  orders -> purchase. Any file in that format works, at any size (read as a stream).
- MovieLens ratings: GroupLens' ``u.data`` (user, item, rating, unix seconds; tab-separated, no
  header) or RecBole's atomic ``.inter`` file of the same columns (a typed header line). Every rating
  is a purchase: the user has seen the film, so it is neither recommended again (the purchase filter)
  nor a case twice. Titles come from the ``.item`` (RecBole) or ``u.item`` (GroupLens) file beside it.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator, Union

import pandas as pd

from streamrec.model.events import Event

OTTO_TYPES = {"clicks": "click", "carts": "add_to_cart", "orders": "purchase"}
UCI_PRODUCT_CODE = r"^\d{5}[A-Za-z]{0,2}$"


@dataclass(frozen=True)
class History:
    events: list[Event]  # in time order (ties: the order the data gives them)
    titles: dict[str, str]  # product_id -> title (where the data has one)
    prices: dict[str, float]  # product_id -> typical unit price (where the data has one)


def _open_text(path: Union[str, Path]) -> IO[str]:
    p = str(path)
    return gzip.open(p, "rt", encoding="utf-8") if p.endswith(".gz") else open(p, encoding="utf-8")


def read_uci(path: Union[str, Path]) -> History:
    dtypes: dict[str, Any] = {"InvoiceNo": str, "StockCode": str, "Description": str, "CustomerID": "float64"}
    df = pd.read_csv(
        path,
        dtype=dtypes,
        encoding="latin-1",
    )
    df["line"] = range(len(df))  # the position in the file: the order of an invoice's lines
    df = df[
        df["CustomerID"].notna()
        & (df["Quantity"] > 0)
        & (df["UnitPrice"] > 0)
        & ~df["InvoiceNo"].str.startswith("C")
        & df["StockCode"].str.match(UCI_PRODUCT_CODE)
    ].copy()
    df["StockCode"] = df["StockCode"].str.upper()
    df["user_id"] = df["CustomerID"].astype("int64").astype(str)
    df["ts"] = pd.to_datetime(df["InvoiceDate"]).astype("datetime64[ms]").astype("int64")
    titles = (
        df.dropna(subset=["Description"])
        .groupby("StockCode")["Description"]
        .agg(lambda s: s.value_counts().index[0].strip())
        .to_dict()
    )
    prices = df.groupby("StockCode")["UnitPrice"].median().to_dict()
    lines = df.drop_duplicates(subset=["InvoiceNo", "StockCode"]).sort_values(
        ["ts", "InvoiceNo", "line"], kind="stable"
    )
    events = [
        Event(f"uci-{inv}-{code}", user, int(ts), "purchase", code)
        for inv, code, user, ts in zip(lines["InvoiceNo"], lines["StockCode"], lines["user_id"], lines["ts"])
    ]
    return History(events, {str(k): str(v) for k, v in titles.items()}, {str(k): float(v) for k, v in prices.items()})


def iter_otto(path: Union[str, Path]) -> Iterator[Event]:
    with _open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                session = json.loads(line)
                sid = session["session"]
                for i, e in enumerate(session["events"]):
                    yield Event(f"otto-{sid}-{i}", str(sid), int(e["ts"]), OTTO_TYPES[e["type"]], str(e["aid"]))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{lineno}: not an OTTO session line ({exc})") from exc


def read_otto(path: Union[str, Path]) -> History:
    events = sorted(iter_otto(path), key=lambda e: e.ts)  # stable: ties keep the file's order
    return History(events, {}, {})


def read_movielens(path: Union[str, Path]) -> History:
    p = Path(path)
    with _open_text(p) as f:
        first = f.readline()
    recbole = ":" in first  # RecBole's header names each column with its type (user_id:token ...)
    dtypes: dict[str, Any] = {"user": str, "item": str, "ts": "int64"}
    df = pd.read_csv(p, sep="\t", header=None, skiprows=1 if recbole else 0, usecols=[0, 1, 3],
                     names=["user", "item", "ts"], dtype=dtypes)
    df["line"] = range(len(df))
    df = df.sort_values(["ts", "line"], kind="stable")
    events = [Event(f"ml-{u}-{i}", u, int(ts) * 1000, "purchase", i)
              for u, i, ts in zip(df["user"], df["item"], df["ts"])]
    return History(events, _movielens_titles(p, recbole), {})


def _movielens_titles(path: Path, recbole: bool) -> dict[str, str]:
    if recbole:
        item = path.with_suffix(".item")
        if not item.exists():
            return {}
        items = pd.read_csv(item, sep="\t", dtype=str, usecols=[0, 1], names=["item", "title"], skiprows=1)
    else:
        item = path.with_name("u.item")
        if not item.exists():
            return {}
        items = pd.read_csv(item, sep="|", dtype=str, usecols=[0, 1], names=["item", "title"], header=None,
                            encoding="latin-1")
    return {str(i): str(t) for i, t in zip(items["item"], items["title"]) if isinstance(t, str)}


def read_history(path: Union[str, Path], fmt: str) -> History:
    if fmt == "uci":
        return read_uci(path)
    if fmt == "otto":
        return read_otto(path)
    if fmt == "movielens":
        return read_movielens(path)
    raise ValueError(f"unknown data format {fmt!r}: expected 'uci', 'otto' or 'movielens'")
