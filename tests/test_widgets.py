"""The neighbour explorer reacts to its knobs."""

import torch

from recrl_lib.widgets import neighbour_explorer


def test_explorer_updates_on_pick_and_k():
    titles = ["A", "B", "C", "D"]
    vectors = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    picker, k, table = neighbour_explorer(titles, vectors, k=1).children
    assert "<b>A</b>" in table.value and "B" in table.value and ">C<" not in table.value
    picker.value = "C"
    assert "<b>C</b>" in table.value and ">D<" in table.value
    k.value = 3
    assert table.value.count("<tr>") == 4  # header + 3 neighbours
