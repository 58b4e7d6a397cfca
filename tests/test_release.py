"""The corpus's dataset card: per source its kept and rejected conversations (by reason) and its license."""

from __future__ import annotations

import json
from collections import Counter

from hala.data.manifest import Manifest
from hala.run.release import dataset_card


def test_the_card_names_each_sources_size_rejects_and_license(tmp_path):
    run = tmp_path / "run"
    local = tmp_path / "mine.jsonl"
    local.write_text("")
    inputs = ["hf://Open-Orca/OpenOrca", "hf://allenai/tulu-3-sft-mixture", "hf://GAIR/ReAlign-Alpaca", str(local)]
    Manifest(stage="translate", config={"inputs": inputs}, counts={"rows_out": 7, "rejected_qa_truncated": 2,
             "rejected_source_tulu3_english": 1, "qa_truncated": 3}).write(run / "translate")  # fmt: skip
    rejected = run / "translate" / "rejected"
    rejected.mkdir()
    rows = [{"file": "hf://Open-Orca/OpenOrca", "line": 3, "kind": "qa_truncated", "reason": "r"},
            {"file": str(local), "line": 1, "kind": "qa_truncated", "reason": "r"},
            {"file": "hf://allenai/tulu-3-sft-mixture", "line": 9, "kind": "source_tulu3_english", "reason": "r"}]  # fmt: skip
    (rejected / "u.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    Manifest(stage="audit", config={}, counts={"rows": 7, "flagged": 2, "flagged_html_tags": 1,
                                               "flagged_roles": 1}).write(run / "audit")  # fmt: skip
    card = dataset_card(run, "tiny", Counter({"hf://Open-Orca/OpenOrca": 4, "hf://allenai/tulu-3-sft-mixture": 2,
                                              str(local): 1}))  # fmt: skip
    assert "| `hf://Open-Orca/OpenOrca` | 4 | qa_truncated 1 | mit |" in card
    assert "| `hf://allenai/tulu-3-sft-mixture` | 2 | source_tulu3_english 1 | odc-by (subsets carry" in card
    assert "| `hf://GAIR/ReAlign-Alpaca` | 0 | 0 | not stated on its card |" in card
    assert f"| `{local}` | 1 | qa_truncated 1 | local file: see its origin |" in card
    assert "`hala data audit` of this corpus: 2 of 7 conversations flagged" in card and "- html_tags: 1" in card
    assert "`qa_*` count segments" in card and "- rejected_source_tulu3_english: 1" in card
