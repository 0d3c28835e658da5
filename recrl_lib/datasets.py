"""MovieLens-100K: find it, fetch it, load it, split it.

Where the data is looked for, in order:

1. the ``path`` argument of :func:`load_movielens_100k`, else ``$RECRL_DATA``;
2. the cache ``datasets/ml-100k/`` in this repository;
3. else it is fetched into the cache (``python -m recrl_lib.datasets fetch``).

A folder may hold either layout: RecBole's atomic files (``ml-100k.inter``, ``.item``,
``.user``) or GroupLens's original files (``u.data``, ``u.item``, ``u.user``).
The fetch takes the atomic files out of the RecBole wheel on PyPI (data files only;
RecBole itself is never installed). MovieLens's licence forbids redistribution, so
nothing of the data is committed to git.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import torch

CACHE_DIR = Path(__file__).resolve().parents[1] / "datasets" / "ml-100k"
RECBOLE_VERSION = "1.2.1"
FIX_COMMAND = "python -m recrl_lib.datasets fetch  (or: make data)"
POSITIVE_THRESHOLD = 4  # implicit feedback: a rating >= 4 counts as a positive

# sha256 of the files inside recbole-1.2.1-py3-none-any.whl (checked on fetch and on load)
ATOMIC_FILES = {
    "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
    "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
}
GROUPLENS_FILES = ("u.data", "u.item", "u.user")
GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)  # GroupLens's order (u.genre)


class DatasetError(RuntimeError):
    """MovieLens-100K is missing, incomplete or malformed; the message says what to run."""


@dataclass
class MovieLens100K:
    """MovieLens-100K with ids mapped to contiguous ``0..n-1`` (original ids kept as ``*_raw``).

    ratings: user, item, rating (1-5), timestamp, positive (rating >= 4), user_raw, item_raw
    items:   item, item_raw, title, year (nullable), genres (tuple of names)
    users:   user, user_raw, age, gender, occupation
    genre_matrix: [n_items, n_genres] multi-hot float32, columns in ``genres`` order
    """

    ratings: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    genres: tuple[str, ...]
    genre_matrix: np.ndarray
    source: Path
    layout: str

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def split(self, test_fraction: float = 0.2) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Per-user chronological split; see :func:`chronological_split`."""
        return chronological_split(self.ratings, test_fraction)

    @cached_property
    def _default_split(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        return self.split(0.2)

    @property
    def train(self) -> pd.DataFrame:
        """Each user's earliest 80% of ratings."""
        return self._default_split[0]

    @property
    def test(self) -> pd.DataFrame:
        """Each user's latest 20% of ratings."""
        return self._default_split[1]

    def __repr__(self) -> str:
        return (
            f"MovieLens100K({self.n_users} users, {self.n_items} items, "
            f"{len(self.ratings)} ratings, layout={self.layout!r}, source='{self.source}')"
        )


def chronological_split(
    ratings: pd.DataFrame, test_fraction: float = 0.2
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split each user's ratings in time: the last ``test_fraction`` go to test.

    Ties in timestamp are broken by item id, so the split is deterministic and no test
    interaction of a user is earlier than any of that user's train interactions.
    Every user keeps at least one train rating.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    ordered = ratings.sort_values(["user", "timestamp", "item"], kind="stable")
    rank = ordered.groupby("user").cumcount()
    size = ordered.groupby("user")["item"].transform("size")
    n_test = np.minimum(np.floor(size * test_fraction), size - 1)
    is_test = rank >= size - n_test
    return ordered[~is_test].reset_index(drop=True), ordered[is_test].reset_index(drop=True)


def interaction_matrix(ratings: pd.DataFrame, n_users: int, n_items: int):
    """[n_users, n_items] bool torch tensor, True where ``ratings`` holds the (user, item) pair."""
    matrix = torch.zeros(n_users, n_items, dtype=torch.bool)
    rows = torch.as_tensor(ratings["user"].to_numpy(dtype=np.int64, copy=True))
    cols = torch.as_tensor(ratings["item"].to_numpy(dtype=np.int64, copy=True))
    matrix[rows, cols] = True
    return matrix


def recent_history(
    ratings: pd.DataFrame, n_users: int, length: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each user's last ``length`` ratings in time, newest last, padded on the left.

    Returns items [n_users, length] long, ratings [n_users, length] float (1..5, 0 on padding)
    and mask [n_users, length] bool (True = a real rating). Ties in time are ordered by item.
    """
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    ordered = ratings.sort_values(["user", "timestamp", "item"], kind="stable")
    from_end = ordered.groupby("user").cumcount(ascending=False).to_numpy()
    keep = from_end < length
    users = ordered["user"].to_numpy()[keep]
    slots = length - 1 - from_end[keep]
    items = torch.zeros(n_users, length, dtype=torch.long)
    values = torch.zeros(n_users, length)
    mask = torch.zeros(n_users, length, dtype=torch.bool)
    items[users, slots] = torch.as_tensor(ordered["item"].to_numpy()[keep], dtype=torch.long)
    values[users, slots] = torch.as_tensor(ordered["rating"].to_numpy()[keep], dtype=torch.float)
    mask[users, slots] = True
    return items, values, mask


# ----------------------------------------------------------------------------- locating


def _layout_of(folder: Path) -> str | None:
    """'atomic', 'grouplens' or None; a half-present layout is an error naming the gap."""
    for layout, names in (("atomic", tuple(ATOMIC_FILES)), ("grouplens", GROUPLENS_FILES)):
        present = [n for n in names if (folder / n).is_file()]
        if present and len(present) < len(names):
            missing = sorted(set(names) - set(present))
            raise DatasetError(
                f"MovieLens-100K in {folder} is incomplete: {', '.join(missing)} missing "
                f"(found {', '.join(present)}). Restore the file(s), or run: {FIX_COMMAND}"
            )
        if present:
            return layout
    return None


def locate(path: str | os.PathLike | None = None) -> tuple[Path, str]:
    """The folder holding MovieLens-100K and its layout, or None if the cache is empty."""
    origin, folder = "the path argument", path
    if folder is None and os.environ.get("RECRL_DATA"):
        origin, folder = "$RECRL_DATA", os.environ["RECRL_DATA"]
    if folder is None:
        return CACHE_DIR, _layout_of(CACHE_DIR) if CACHE_DIR.is_dir() else None
    folder = Path(folder).expanduser()
    for candidate in (folder, folder / "ml-100k"):
        if candidate.is_dir() and (layout := _layout_of(candidate)):
            return candidate, layout
    raise DatasetError(
        f"{origin} points to {folder}, which holds neither RecBole's files "
        f"({', '.join(ATOMIC_FILES)}) nor GroupLens's ({', '.join(GROUPLENS_FILES)}). "
        f"Point it at the folder holding them, or unset it and run: {FIX_COMMAND}"
    )


# ----------------------------------------------------------------------------- parsing


def _read_rows(
    path: Path, sep: str, n_fields: int, header: str | None, encoding: str
) -> list[list[str]]:
    """Split a text table into rows, checking the header and every row's field count."""
    try:
        lines = path.read_bytes().decode(encoding).splitlines()
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path} is not {encoding} text ({err}). Run: {FIX_COMMAND}") from err
    start = 0
    if header is not None:
        if not lines or lines[0].strip() != header:
            got = lines[0][:80] if lines else "an empty file"
            raise DatasetError(
                f"{path} is malformed: expected the header {header!r}, got {got!r}. "
                f"Run: {FIX_COMMAND}"
            )
        start = 1
    rows = []
    for number, line in enumerate(lines[start:], start=start + 1):
        if not line.strip():
            continue
        fields = line.split(sep)
        if len(fields) != n_fields:
            raise DatasetError(
                f"{path} is truncated or malformed at line {number}: expected {n_fields} "
                f"fields separated by {sep!r}, got {len(fields)}. Run: {FIX_COMMAND}"
            )
        rows.append(fields)
    if not rows:
        raise DatasetError(f"{path} holds no rows. Run: {FIX_COMMAND}")
    return rows


def _as_int(path: Path, column: pd.Series, name: str, first_line: int) -> pd.Series:
    values = pd.to_numeric(column, errors="coerce")
    bad = values.isna() | (values != values.round())
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DatasetError(
            f"{path} is malformed at line {row + first_line}: {name} {column.iloc[row]!r} is "
            f"not an integer. Run: {FIX_COMMAND}"
        )
    return values.astype("int64")


def _year(text: str) -> float:
    return float(text) if re.fullmatch(r"\d{4}", text.strip()) else np.nan


def _read_atomic(folder: Path):
    first = 2  # line number of the first data row (after the header)
    inter = pd.DataFrame(
        _read_rows(
            folder / "ml-100k.inter",
            "\t",
            4,
            "user_id:token\titem_id:token\trating:float\ttimestamp:float",
            "utf-8",
        ),
        columns=["user_raw", "item_raw", "rating", "timestamp"],
    )
    for col in inter.columns:
        inter[col] = _as_int(folder / "ml-100k.inter", inter[col], col, first)
    item_rows = _read_rows(
        folder / "ml-100k.item",
        "\t",
        4,
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq",
        "utf-8",
    )
    items = pd.DataFrame(item_rows, columns=["item_raw", "title", "year", "genres"])
    items["item_raw"] = _as_int(folder / "ml-100k.item", items["item_raw"], "item_id", first)
    items["year"] = [_year(y) for y in items["year"]]
    for row in np.flatnonzero(items["year"].isna().to_numpy()):  # e.g. year "V", "(1995)" in title
        if match := re.fullmatch(r"(.*) \((\d{4})\)", items.at[row, "title"]):
            items.at[row, "title"], items.at[row, "year"] = match.group(1), float(match.group(2))
    items["genres"] = [tuple(g.split()) for g in items["genres"]]
    for number, genres in enumerate(items["genres"], start=first):
        unknown = [g for g in genres if g not in GENRES]
        if unknown:
            raise DatasetError(
                f"{folder / 'ml-100k.item'} is malformed at line {number}: unknown genre(s) "
                f"{unknown}. Run: {FIX_COMMAND}"
            )
    users = pd.DataFrame(
        _read_rows(
            folder / "ml-100k.user",
            "\t",
            5,
            "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token",
            "utf-8",
        ),
        columns=["user_raw", "age", "gender", "occupation", "zip_code"],
    )
    users["user_raw"] = _as_int(folder / "ml-100k.user", users["user_raw"], "user_id", first)
    users["age"] = _as_int(folder / "ml-100k.user", users["age"], "age", first)
    return inter, items, users


def _read_grouplens(folder: Path):
    inter = pd.DataFrame(
        _read_rows(folder / "u.data", "\t", 4, None, "latin-1"),
        columns=["user_raw", "item_raw", "rating", "timestamp"],
    )
    for col in inter.columns:
        inter[col] = _as_int(folder / "u.data", inter[col], col, 1)
    rows = _read_rows(folder / "u.item", "|", 5 + len(GENRES), None, "latin-1")
    items = pd.DataFrame({"item_raw": [r[0] for r in rows]})
    items["item_raw"] = _as_int(folder / "u.item", items["item_raw"], "movie id", 1)
    titles, years = [], []
    for r in rows:  # "Toy Story (1995)" -> ("Toy Story", 1995); else the release date's year
        match = re.fullmatch(r"(.*) \((\d{4})\)", r[1].strip())
        titles.append(match.group(1) if match else r[1].strip())
        years.append(float(match.group(2)) if match else _year(r[2][-4:]))
    items["title"], items["year"] = titles, years
    flags = pd.DataFrame([r[5:] for r in rows])
    flags_int = flags.apply(pd.to_numeric, errors="coerce")
    if flags_int.isna().any().any() or not flags_int.isin([0, 1]).all().all():
        line = int(np.flatnonzero((flags_int.isna() | ~flags_int.isin([0, 1])).any(axis=1))[0])
        raise DatasetError(
            f"{folder / 'u.item'} is malformed at line {line + 1}: genre flags must be 0 or 1. "
            f"Run: {FIX_COMMAND}"
        )
    items["genres"] = [tuple(g for g, f in zip(GENRES, row) if f) for row in flags_int.to_numpy()]
    users = pd.DataFrame(
        _read_rows(folder / "u.user", "|", 5, None, "latin-1"),
        columns=["user_raw", "age", "gender", "occupation", "zip_code"],
    )
    users["user_raw"] = _as_int(folder / "u.user", users["user_raw"], "user id", 1)
    users["age"] = _as_int(folder / "u.user", users["age"], "age", 1)
    return inter, items, users


def _check_cache_integrity(folder: Path) -> None:
    for name, digest in ATOMIC_FILES.items():
        if hashlib.sha256((folder / name).read_bytes()).hexdigest() != digest:
            raise DatasetError(
                f"{folder / name} is corrupt or truncated (its checksum differs from the "
                f"fetched file). Re-fetch it: python -m recrl_lib.datasets fetch --force"
            )


def load_movielens_100k(
    path: str | os.PathLike | None = None, *, download: bool = True
) -> MovieLens100K:
    """Load MovieLens-100K, fetching it into ``datasets/ml-100k/`` if it is nowhere to be found.

    >>> data = load_movielens_100k()
    >>> data.n_users, data.n_items, len(data.ratings)
    (943, 1682, 100000)
    """
    folder, layout = locate(path)
    if layout is None:
        if not download:
            raise DatasetError(f"MovieLens-100K is not in {CACHE_DIR}. Run: {FIX_COMMAND}")
        folder, layout = fetch(), "atomic"
    if folder.resolve() == CACHE_DIR.resolve():
        _check_cache_integrity(folder)
    inter, items, users = (_read_atomic if layout == "atomic" else _read_grouplens)(folder)

    def index_by_raw_id(table: pd.DataFrame, key: str) -> pd.DataFrame:
        if table[f"{key}_raw"].duplicated().any():
            dup = table.loc[table[f"{key}_raw"].duplicated(), f"{key}_raw"].iloc[0]
            raise DatasetError(
                f"The {key} file in {folder} lists id {dup} twice. Run: {FIX_COMMAND}"
            )
        table = table.sort_values(f"{key}_raw", kind="stable").reset_index(drop=True)
        return table.assign(**{key: np.arange(len(table))})

    items, users = index_by_raw_id(items, "item"), index_by_raw_id(users, "user")

    ratings = inter.copy()
    for key, table in (("user", users), ("item", items)):
        index = pd.Series(table[key].to_numpy(), index=table[f"{key}_raw"].to_numpy())
        mapped = ratings[f"{key}_raw"].map(index)
        if mapped.isna().any():
            raw = ratings.loc[mapped.isna(), f"{key}_raw"].iloc[0]
            raise DatasetError(
                f"The ratings in {folder} mention {key} {raw}, which the {key} file does not "
                f"list: a file is truncated or from another dataset. Run: {FIX_COMMAND}"
            )
        ratings[key] = mapped.astype("int64")
    if not ratings["rating"].between(1, 5).all():
        raise DatasetError(f"The ratings in {folder} hold values outside 1..5. Run: {FIX_COMMAND}")
    ratings["positive"] = ratings["rating"] >= POSITIVE_THRESHOLD
    ratings = ratings[["user", "item", "rating", "timestamp", "positive", "user_raw", "item_raw"]]

    items["year"] = items["year"].astype("Int64")
    genre_matrix = np.array(
        [[g in genres for g in GENRES] for genres in items["genres"]], dtype=np.float32
    )
    return MovieLens100K(
        ratings=ratings,
        items=items[["item", "item_raw", "title", "year", "genres"]],
        users=users[["user", "user_raw", "age", "gender", "occupation"]],
        genres=GENRES,
        genre_matrix=genre_matrix,
        source=folder,
        layout=layout,
    )


# ----------------------------------------------------------------------------- fetching


def _cache_is_complete(dest: Path) -> bool:
    try:
        _check_cache_integrity(dest)
        return True
    except (OSError, DatasetError):
        return False


def fetch(dest: str | os.PathLike | None = None, *, force: bool = False) -> Path:
    """Download the RecBole wheel from PyPI and unpack only its MovieLens-100K files."""
    dest = Path(dest) if dest is not None else CACHE_DIR
    if not force and _cache_is_complete(dest):
        print(f"MovieLens-100K already in {dest}")
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"Fetching MovieLens-100K from the RecBole {RECBOLE_VERSION} wheel on PyPI ...")
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            f"recbole=={RECBOLE_VERSION}",
            "--dest",
            tmp,
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("recbole-*.whl"))
        if result.returncode != 0 or not wheels:
            raise DatasetError(
                f"Could not download recbole=={RECBOLE_VERSION} from PyPI:\n"
                f"{result.stderr.strip()[-800:]}\nCheck the network and retry, or download "
                "ml-100k.zip from https://grouplens.org/datasets/movielens/100k/, unzip it and "
                "set RECRL_DATA to the folder that holds u.data."
            )
        with zipfile.ZipFile(wheels[0]) as wheel:
            for name, digest in ATOMIC_FILES.items():
                payload = wheel.read(f"recbole/dataset_example/ml-100k/{name}")
                if hashlib.sha256(payload).hexdigest() != digest:
                    raise DatasetError(f"{name} in the downloaded wheel fails its checksum.")
                partial = dest / f"{name}.part"
                partial.write_bytes(payload)
                partial.replace(dest / name)  # atomic: never leaves a half-written file
    print(f"MovieLens-100K saved to {dest}")
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recrl_lib.datasets")
    sub = parser.add_subparsers(dest="command", required=True)
    fetch_cmd = sub.add_parser("fetch", help="download MovieLens-100K into the cache")
    fetch_cmd.add_argument("--dest", default=None, help=f"target folder (default {CACHE_DIR})")
    fetch_cmd.add_argument("--force", action="store_true", help="download even if present")
    sub.add_parser("info", help="load the data and print a summary")
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            fetch(args.dest, force=args.force)
        else:
            print(load_movielens_100k())
    except DatasetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
