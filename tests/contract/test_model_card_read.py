"""The model card is read from an ONNX file's metadata without the onnx package and without its weights."""

from __future__ import annotations

import subprocess
import sys

import onnx
import pytest
from contract_model import contract_model

from mediqa.errors import ModelError
from mediqa.model_card import METADATA_KEY, card_from_metadata, embed_card, onnx_metadata, read_card


def _onnx_props(path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def test_metadata_equals_what_onnx_reads_on_the_default_and_a_contract_model(tmp_path):
    from mediqa.agent.scoring.models import default_model_path

    contract_model(tmp_path / "c.onnx")
    for path in (default_model_path(), tmp_path / "c.onnx"):
        assert onnx_metadata(path) == _onnx_props(path)
        assert read_card(path) == card_from_metadata(_onnx_props(path))


def test_metadata_after_the_graph_and_other_props_and_a_replaced_card(tmp_path):
    path = tmp_path / "c.onnx"
    contract_model(path)
    proto = onnx.load(str(path))
    card = read_card(path)
    extra = proto.metadata_props.add()
    extra.key, extra.value = "site.note", "é – unicode ✓"
    proto.doc_string = "x" * 300  # a field after the graph, with a two-byte length
    embed_card(proto, card)  # replaced: the card's entry now comes last
    onnx.save(proto, str(path))
    props = onnx_metadata(path)
    assert props == _onnx_props(path) and props["site.note"] == "é – unicode ✓" and METADATA_KEY in props


@pytest.mark.parametrize("data", [b"", b"not a model at all\n" * 10, b"\x0a\xff\xff\xff\xff\x0f", b"\x08"])
def test_a_file_that_is_not_onnx_is_a_clear_model_error(tmp_path, data):
    path = tmp_path / "bad.onnx"
    path.write_bytes(data)
    with pytest.raises(ModelError, match="not a readable ONNX model|no MedIQA model card"):
        read_card(path)


def test_a_truncated_model_is_a_clear_model_error(tmp_path):
    path = tmp_path / "c.onnx"
    contract_model(path)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) - 10])  # ends inside the last field
    with pytest.raises(ModelError, match="not a readable ONNX model"):
        read_card(path)


def test_reading_the_card_imports_no_onnx():
    """The running agent reads its card; the onnx package cost it ~11 MB imported and ~7 MB per load."""
    code = ("import sys; from mediqa.model_card import read_card; "
            "from mediqa.agent.scoring.models import default_model_path; read_card(default_model_path()); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'onnx'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
