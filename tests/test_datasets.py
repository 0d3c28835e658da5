"""The MovieLens loader on tiny fixture files: both layouts, every error, the split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recrl_lib import datasets
from recrl_lib.datasets import DatasetError, chronological_split, load_movielens_100k
from tests.conftest import ITEMS, RATINGS, USERS


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("RECRL_DATA", raising=False)


@pytest.mark.parametrize("layout", ["atomic", "grouplens"])
def test_both_layouts_load_the_same_tables(layout, atomic_dir, grouplens_dir):
    data = load_movielens_100k(atomic_dir if layout == "atomic" else grouplens_dir)
    assert data.layout == layout
    assert (data.n_users, data.n_items, len(data.ratings)) == (len(USERS), len(ITEMS), len(RATINGS))
    # contiguous ids, original ids kept
    assert data.items["item"].tolist() == list(range(len(ITEMS)))
    assert data.items["item_raw"].tolist() == [i for i, *_ in ITEMS]
    assert data.items["title"].tolist() == [t for _, t, *_ in ITEMS]
    assert data.items["year"].tolist() == [y for _, _, y, _ in ITEMS]
    assert data.users["occupation"].tolist() == [u[3] for u in USERS]
    raw_to_item = dict(zip(data.items["item_raw"], data.items["item"]))
    assert (data.ratings["item"] == data.ratings["item_raw"].map(raw_to_item)).all()
    # multi-hot genres agree with the genre names
    assert data.genre_matrix.shape == (len(ITEMS), len(datasets.GENRES))
    for row, genres in zip(data.genre_matrix, data.items["genres"]):
        assert {datasets.GENRES[j] for j in np.flatnonzero(row)} == set(genres)
    # implicit feedback
    assert (data.ratings["positive"] == (data.ratings["rating"] >= 4)).all()


def test_layouts_agree(atomic_dir, grouplens_dir):
    a, g = load_movielens_100k(atomic_dir), load_movielens_100k(grouplens_dir)
    pd.testing.assert_frame_equal(a.ratings, g.ratings)
    pd.testing.assert_frame_equal(a.items, g.items)
    np.testing.assert_array_equal(a.genre_matrix, g.genre_matrix)


def test_env_var_and_nested_folder(atomic_dir, monkeypatch):
    monkeypatch.setenv("RECRL_DATA", str(atomic_dir.parent))  # parent holding ml-100k/? no
    with pytest.raises(DatasetError, match=r"\$RECRL_DATA points to"):
        load_movielens_100k()
    nested = atomic_dir.parent / "ml-100k"
    atomic_dir.rename(nested)
    assert load_movielens_100k().source == nested  # <dir>/ml-100k is found too


def test_split_is_chronological_per_user(atomic_dir):
    data = load_movielens_100k(atomic_dir)
    train, test = chronological_split(data.ratings, test_fraction=0.4)
    assert len(train) + len(test) == len(data.ratings)
    for user in data.ratings["user"].unique():
        tr, te = train[train.user == user], test[test.user == user]
        assert len(tr) >= 1
        if len(te):
            assert te["timestamp"].min() >= tr["timestamp"].max()
    # user 1 has 5 ratings: floor(5 * 0.4) = 2 in test, the two latest
    user1 = data.users.loc[data.users.user_raw == 1, "user"].item()
    assert sorted(test[test.user == user1]["timestamp"]) == [400, 500]
    # the default split is 80/20 and deterministic
    a, b = data.split(), data.split()
    pd.testing.assert_frame_equal(a[1], b[1])
    pd.testing.assert_frame_equal(data.test, a[1])


def test_split_rejects_bad_fraction(atomic_dir):
    with pytest.raises(ValueError, match="test_fraction"):
        chronological_split(load_movielens_100k(atomic_dir).ratings, 1.0)


# ----------------------------------------------------------------------------- errors


def test_missing_folder_names_the_fix(tmp_path):
    with pytest.raises(DatasetError, match="recrl_lib.datasets fetch"):
        load_movielens_100k(tmp_path / "nowhere")


def test_missing_file_is_named(atomic_dir):
    (atomic_dir / "ml-100k.user").unlink()
    with pytest.raises(DatasetError, match=r"ml-100k\.user missing.*fetch"):
        load_movielens_100k(atomic_dir)


def test_truncated_line_is_named(grouplens_dir):
    data = (grouplens_dir / "u.data").read_text()
    (grouplens_dir / "u.data").write_text(data[: len(data) - 6])  # cut the last line short
    with pytest.raises(
        DatasetError, match=rf"u\.data is truncated or malformed at line {len(RATINGS)}"
    ):
        load_movielens_100k(grouplens_dir)


def test_truncated_item_file_is_caught(atomic_dir):
    lines = (atomic_dir / "ml-100k.item").read_text().splitlines()
    (atomic_dir / "ml-100k.item").write_text("\n".join(lines[:-1]) + "\n")  # whole line lost
    with pytest.raises(DatasetError, match="does not list: a file is truncated"):
        load_movielens_100k(atomic_dir)


def test_bad_header_and_bad_number(atomic_dir):
    inter = atomic_dir / "ml-100k.inter"
    lines = inter.read_text().splitlines()
    inter.write_text("\n".join(["user\titem\trating\tts"] + lines[1:]))
    with pytest.raises(DatasetError, match="expected the header"):
        load_movielens_100k(atomic_dir)
    lines[3] = "1\t30\tfour\t300"
    inter.write_text("\n".join(lines))
    with pytest.raises(DatasetError, match=r"ml-100k\.inter is malformed at line 4: rating 'four'"):
        load_movielens_100k(atomic_dir)


def test_unknown_genre(atomic_dir):
    item = atomic_dir / "ml-100k.item"
    item.write_text(item.read_text().replace("Fargo\t1996\tCrime", "Fargo\t1996\tNoir"))
    with pytest.raises(DatasetError, match=r"unknown genre\(s\) \['Noir'\]"):
        load_movielens_100k(atomic_dir)


def test_corrupt_cache_fails_its_checksum(atomic_dir, monkeypatch):
    monkeypatch.setattr(datasets, "CACHE_DIR", atomic_dir)  # fixture files != fetched files
    with pytest.raises(DatasetError, match="corrupt or truncated.*fetch --force"):
        load_movielens_100k()


def test_empty_cache_without_download(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "CACHE_DIR", tmp_path / "empty")
    with pytest.raises(DatasetError, match="is not in .*fetch"):
        load_movielens_100k(download=False)


def test_cli_reports_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RECRL_DATA", str(tmp_path))
    assert datasets.main(["info"]) == 1
    assert "error: $RECRL_DATA points to" in capsys.readouterr().err
