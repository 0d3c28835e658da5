"""Text encoder, pooling, cache, history encoders, BPR matrix factorisation."""

from __future__ import annotations

import pytest
import torch

from recrl_lib.datasets import load_movielens_100k
from recrl_lib.encoders import (
    GRUHistoryEncoder,
    ItemTable,
    MatrixFactorization,
    MeanHistoryEncoder,
    ModelNotFoundError,
    TextEncoder,
    TransformerHistoryEncoder,
    catalogue_stats,
    fit_bpr,
    item_features,
    item_texts,
    mean_pool,
    nearest_neighbours,
)
from recrl_lib.encoders.history import pad_histories, steps_ago
from recrl_lib.encoders.text import resolve_model


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return TextEncoder(cache_dir=tmp_path_factory.mktemp("cache"), device=torch.device("cpu"))


def test_mean_pool_matches_hand_computation():
    tokens = torch.tensor(
        [[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[2.0, 0.0], [0.0, 0.0], [0.0, 0.0]]]
    )  # [B=2, T=3, D=2]
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    expected = torch.tensor([[2.0, 3.0], [2.0, 0.0]])  # padding (the 100s) ignored
    torch.testing.assert_close(mean_pool(tokens, mask), expected)


def test_vectors_are_unit_norm_and_deterministic(encoder):
    texts = ["Toy Story (1995) — Animation, Children's, Comedy", "Fargo (1996) — Crime, Drama", "x"]
    a = encoder.encode(texts, progress=False)
    assert a.shape == (3, 384) and a.dtype == torch.float32
    torch.testing.assert_close(a.norm(dim=1), torch.ones(3))
    # the same text in another batch (other padding) gives the same vector
    b = TextEncoder(cache_dir=None, device=torch.device("cpu")).encode(texts[1:2], progress=False)
    torch.testing.assert_close(a[1:2], b, atol=1e-5, rtol=0)


def test_pooling_agrees_with_sentence_transformers(encoder):
    st = pytest.importorskip("sentence_transformers")
    from recrl_lib.encoders.text import default_model_path

    reference = st.SentenceTransformer(str(default_model_path()), device="cpu")
    texts = ["Star Wars (1977) — Action, Sci-Fi", "a much longer text " * 5]
    ours = TextEncoder(cache_dir=None, device=torch.device("cpu")).encode(texts, progress=False)
    theirs = torch.as_tensor(reference.encode(texts, normalize_embeddings=True))
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)


def test_cache_hit_does_not_call_the_model(tmp_path):
    texts = ["Heat (1995) — Action, Crime", "Casablanca (1942) — Drama, Romance"]
    first = TextEncoder(cache_dir=tmp_path, device=torch.device("cpu"))
    v1 = first.encode(texts, progress=False)
    assert first.model_calls == 1
    second = TextEncoder(cache_dir=tmp_path, device=torch.device("cpu"))
    v2 = second.encode(list(reversed(texts)), progress=False)
    assert second.model_calls == 0
    torch.testing.assert_close(v1, v2.flip(0))
    second.encode([*texts, "a new text"], progress=False)  # only the new text runs
    assert second.model_calls == 1


def test_bad_model_path_and_hub_id_offline(monkeypatch, tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        TextEncoder("./no/such/model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        TextEncoder(tmp_path / "empty")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE=1 forbids downloads"):
        TextEncoder("someone/not-a-cached-model")
    monkeypatch.setenv("RECRL_TEXT_MODEL", "/no/such/dir")
    with pytest.raises(ModelNotFoundError, match=r"\$RECRL_TEXT_MODEL is the path"):
        resolve_model()


def test_empty_or_wrong_input(encoder):
    with pytest.raises(ValueError, match="no texts"):
        encoder.encode([])
    with pytest.raises(TypeError, match="wrap a single text"):
        encoder.encode("just a string")
    with pytest.raises(TypeError, match="takes strings"):
        encoder.encode(["ok", 3])


def test_item_texts_format(atomic_dir):
    from recrl_lib.datasets import load_movielens_100k

    texts = item_texts(load_movielens_100k(atomic_dir))
    assert texts[0] == "Toy Story (1995) — Animation, Children's, Comedy"


def test_nearest_neighbours_excludes_the_query():
    vectors = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    idx, sim = nearest_neighbours(vectors, 0, k=2)
    assert idx.tolist() == [1, 2]
    assert sim[0] > sim[1]


# ----------------------------------------------------------------------------- history encoders

ENCODERS = [MeanHistoryEncoder, GRUHistoryEncoder, TransformerHistoryEncoder]


@pytest.mark.parametrize("encoder_class", ENCODERS)
def test_padding_does_not_change_the_state(encoder_class):
    torch.manual_seed(0)
    table = ItemTable(dim=16, text_vectors=torch.randn(20, 8), use_ids=True)
    model = encoder_class(table, n_responses=2).eval()
    items, mask = pad_histories([[1, 2, 3], [4], []], length=5)
    responses = torch.rand(3, 5, 2)
    state = model(items, mask, responses)
    assert state.shape == (3, 16)
    # scramble everything under the padding: the state must not move
    items2 = torch.where(mask, items, torch.randint(0, 20, items.shape))
    responses2 = torch.where(mask[..., None], responses, torch.rand(3, 5, 2) * 10)
    torch.testing.assert_close(model(items2, mask, responses2), state)
    # a longer pad gives the same state too
    items3, mask3 = pad_histories([[1, 2, 3], [4], []], length=8)
    responses3 = torch.cat([responses, torch.rand(3, 3, 2)], dim=1)
    torch.testing.assert_close(model(items3, mask3, responses3), state, atol=1e-5, rtol=0)
    assert torch.isfinite(state).all()


@pytest.mark.parametrize("encoder_class", ENCODERS)
def test_a_precomputed_table_gives_the_same_state(encoder_class):
    torch.manual_seed(0)
    table = ItemTable(dim=16, text_vectors=torch.randn(20, 8), use_ids=True)
    model = encoder_class(table, n_responses=2).eval()
    items, mask = pad_histories([[1, 2, 3], [4]], length=4)
    responses = torch.rand(2, 4, 2)
    torch.testing.assert_close(
        model(items, mask, responses, table=table.all()), model(items, mask, responses)
    )


@pytest.mark.parametrize("encoder_class", ENCODERS)
def test_every_encoder_reads_which_item_was_clicked_and_the_order(encoder_class):
    """Item 3 clicked and item 7 skipped is not the reverse; nor is the same session reordered
    (a plain mean of item + response vectors gave both bit for bit the same state)."""
    torch.manual_seed(0)
    table = ItemTable(dim=16, text_vectors=torch.randn(20, 8), use_ids=False)
    model = encoder_class(table, n_responses=2).eval()
    items, mask = pad_histories([[3, 7], [3, 7]], length=2)
    responses = torch.tensor([[[1.0, 0.8], [0.0, 0.0]], [[0.0, 0.0], [1.0, 0.8]]])
    clicked_3, clicked_7 = model(items, mask, responses)
    assert (clicked_3 - clicked_7).abs().max() > 1e-3
    reordered = model(items.flip(1), mask, responses.flip(1))  # the same steps, other order
    assert (reordered - model(items, mask, responses)).abs().amax(1).min() > 1e-3


def test_the_mean_weights_recent_steps_by_its_decay():
    torch.manual_seed(0)
    table = ItemTable(dim=4, text_vectors=torch.eye(4), use_ids=False)
    with torch.no_grad():
        table.text_projection.weight.copy_(torch.eye(4))
    model = MeanHistoryEncoder(table, decay=0.5)
    items, mask = pad_histories([[0, 1, 2]], length=5)
    # weights 0.25, 0.5, 1 for the steps 2, 1 and 0 steps ago; padding after them
    expected = torch.tensor([[0.25, 0.5, 1.0, 0.0]]) / 1.75
    torch.testing.assert_close(model(items, mask), expected)
    assert model.decay == pytest.approx(0.5)
    # the decay is learned: it gets a gradient
    model(items, mask).pow(2).sum().backward()
    assert model.decay_logit.grad.abs() > 0
    with pytest.raises(ValueError, match="decay must be"):
        MeanHistoryEncoder(table, decay=1.0)


def test_steps_ago_counts_real_steps_only():
    mask = torch.tensor([[True, True, False, False], [False, True, False, True]])
    torch.testing.assert_close(steps_ago(mask)[mask], torch.tensor([1.0, 0.0, 1.0, 0.0]))


def test_encoders_reject_bad_shapes():
    model = MeanHistoryEncoder(ItemTable(10, dim=4), n_responses=1)
    items, mask = pad_histories([[1, 2]], length=3)
    with pytest.raises(ValueError, match="responses must be"):
        model(items, mask)
    with pytest.raises(ValueError, match="mask must be"):
        model(items, mask.long(), torch.zeros(1, 3, 1))
    with pytest.raises(ValueError, match="items must be"):
        model(items.float(), mask, torch.zeros(1, 3, 1))


def test_item_table_combines_text_and_ids():
    text = torch.randn(5, 3)
    table = ItemTable(dim=4, text_vectors=text, use_ids=True)
    expected = text @ table.text_projection.weight.T + table.id_embedding.weight
    torch.testing.assert_close(table.all(), expected)
    with pytest.raises(ValueError, match="needs text_vectors"):
        ItemTable(5, use_ids=False)


def test_item_table_gradients_are_reproducible():
    # Large enough for the CPU's parallel paths: indexing's backward differed run to run here.
    torch.manual_seed(0)
    table = ItemTable(dim=64, text_vectors=torch.randn(1682, 419), use_ids=True)
    items = torch.randint(1682, (512, 10), generator=torch.Generator().manual_seed(0))
    weights = torch.randn(512, 10, 64, generator=torch.Generator().manual_seed(1))
    grads = []
    for _ in range(5):
        table.zero_grad()
        (table(items) * weights).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in table.parameters()]))
    assert all(torch.equal(grads[0], g) for g in grads[1:])


def test_bpr_learns_a_planted_preference():
    torch.manual_seed(0)
    # users 0..9 like items 0..4, users 10..19 like items 5..9
    users = torch.arange(20).repeat_interleave(5)
    items = torch.cat([torch.arange(5) if u < 10 else torch.arange(5, 10) for u in range(20)])
    model = MatrixFactorization(20, ItemTable(10, dim=4))
    losses = fit_bpr(model, users, items, epochs=60, batch_size=32, lr=0.05, progress=False)
    assert losses[-1] < losses[0]
    scores = model.score_all()
    assert (scores[:10, :5].mean() > scores[:10, 5:].mean()) and (
        scores[10:, 5:].mean() > scores[10:, :5].mean()
    )


def test_bpr_reports_a_nan_loss():
    model = MatrixFactorization(2, ItemTable(3, dim=2))
    with torch.no_grad():
        model.users.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        fit_bpr(model, torch.tensor([0, 1]), torch.tensor([0, 1]), epochs=1, progress=False)


# ------------------------------------------------------------------ what the recommender knows


def test_catalogue_stats_count_and_shrink_the_training_ratings(atomic_dir):
    data = load_movielens_100k(atomic_dir)
    stats = catalogue_stats(data, prior_weight=2.0)
    train = data.train
    counts = train.groupby("item").size().reindex(range(data.n_items), fill_value=0)
    assert stats.count.tolist() == counts.tolist()
    prior = train["rating"].mean()
    for item in range(data.n_items):
        ratings = train.loc[train["item"] == item, "rating"]
        expected = (ratings.sum() + 2.0 * prior) / (len(ratings) + 2.0)
        assert stats.mean_rating[item].item() == pytest.approx(expected, rel=1e-6)
    assert stats.genres.shape == (data.n_items, data.genre_matrix.shape[1])
    seen = torch.tensor([True, True, False, True, True])
    assert catalogue_stats(data, items_seen=seen).count[2] == 0


def test_item_features_are_recommender_side_and_leave_the_global_state(atomic_dir):
    data = load_movielens_100k(atomic_dir)
    torch.manual_seed(7)
    expected_next = torch.rand(2)
    torch.manual_seed(7)
    features = item_features(data, mf_dim=4, epochs=2)
    assert torch.equal(torch.rand(2), expected_next)  # the global random state is untouched
    n_genres = data.genre_matrix.shape[1]
    assert features.shape == (data.n_items, 4 + 3 + n_genres)
    for column in (-n_genres - 2, -n_genres - 1):  # z-scored mean rating and log count
        assert features[:, column].mean().abs() < 1e-5
    # the genres the rules read, last (kept for items outside items_seen: metadata)
    torch.testing.assert_close(features[:, -n_genres:], torch.tensor(data.genre_matrix).float())
    text = torch.randn(data.n_items, 6)
    with_text = item_features(data, text, mf_dim=4, epochs=2)
    torch.testing.assert_close(with_text[:, :6], text)
    torch.testing.assert_close(with_text[:, 6:], features)
    seen = torch.tensor([True, False, True, True, True])
    cold = item_features(data, mf_dim=4, epochs=2, items_seen=seen)
    assert (cold[1, :-n_genres] == 0).all() and (cold[0] != 0).any()
    torch.testing.assert_close(cold[:, -n_genres:], features[:, -n_genres:])
