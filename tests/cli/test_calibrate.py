"""``mediqa calibrate`` end to end on a state made by the agent's own store and feedback code."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from cli_support import one_line, retake_result

from mediqa.agent.config import load_config
from mediqa.agent.scoring.decision import decide
from mediqa.cli.main import main

BRAIN = {"modality": "CT", "series_description": "STD Brain 5mm", "anatomy": "head"}


def answer_for(label: str, score: float) -> str | None:
    """What a technologist presses at the console (the agent alerts below 2.0)."""
    if label == "good":
        return "false_alert" if score < 2.0 else None  # an ok series that was fine gets no answer
    return "rescanned" if score < 2.0 else "should_have_alerted"


def make_site(state: Path) -> None:
    from mediqa.agent.report.feedback import record_feedback
    from mediqa.agent.report.store import ResultStore
    from mediqa.agent.state.db import open_state

    series = [("STD Brain 5mm", "CT", float(s), "good") for s in np.linspace(1.6, 3.8, 40)]
    series += [("std_brain 5MM", "CT", float(s), "bad") for s in (*np.linspace(0.3, 1.5, 10), 2.05, 2.1)]
    series += [("Abdomen 1.25mm", "CT", 1.8, "good")] * 3 + [("Abdomen 1.25mm", "CT", 1.0, "bad")] * 2
    series += [("t1_fl2d_sag", "MR", 3.0, "good")] * 3
    db = open_state(state)
    try:
        store = ResultStore(db, state / "results.jsonl")
        for i, (description, modality, score, label) in enumerate(series):
            result = replace(retake_result(f"1.2.840.{i}", description), modality=modality, score=score,
                             decision="retake" if score < 2.0 else "ok")
            with db.transaction() as conn:
                saved = store.add(conn, result, 0)
            answer = answer_for(label, score)
            if answer:
                record_feedback(db, saved.result_id, answer, initials="RT")
        store.flush_jsonl()
    finally:
        db.close()


@pytest.fixture
def site(tmp_path: Path, no_system_config: None) -> Path:
    make_site(tmp_path / "state")
    return tmp_path / "state"


def test_the_table_from_the_state_falls_back_where_labels_are_few(site: Path, capsys: pytest.CaptureFixture[str]):
    before = (site / "state.sqlite").read_bytes()
    assert main(["calibrate", "--state-dir", str(site), "--bootstrap", "100"]) == 0
    out = capsys.readouterr().out
    assert "60 scored series of model classical, 25 labelled (11 good, 14 bad)" in out
    assert "CT|std brain 5mm" in out and "CT|abdomen 1 25mm" in out and "MR|t1 fl2d sag" in out
    assert "too few labelled series (n=20: 8 good, 12 bad; need >= 10 good and >= 5 bad)" in out
    assert "-> 1.60 (modality CT)" in out  # the pooled CT threshold applies to the brain protocol
    assert "every good label comes from an alert" in out  # the selection the console's buttons make
    assert "wrote" not in out
    assert (site / "state.sqlite").read_bytes() == before  # read-only


def test_the_proposal_is_written_for_review_and_applied_only_once_named(site: Path, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]):
    out_file = tmp_path / "etc" / "thresholds.yaml"
    argv = ["calibrate", "--state-dir", str(site), "--unanswered-ok-as-good", "--out", str(out_file)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "NOT applied" in out and f"wrote {out_file}" in out
    text = out_file.read_text()
    # 40 good brain series, 5 % may alert: 2 of them; the threshold is the third-lowest good score, 1.713
    assert '"CT|std brain 5mm":' in text and "retake_below: 1.71" in text
    assert "CT|std brain 5mm: retake below 1.71 [bootstrap 95%" in text and "n=52 series (40 good, 12 bad)" in text
    assert "No proposal: CT|abdomen 1 25mm: too few labelled series" in text

    config = tmp_path / "agent.yaml"
    config.write_text(f"state_dir: {site}\nthresholds:\n  reviewed_file: {out_file}\n")
    assert main(["alerts", "--config", str(config)]) == 1  # an unsigned proposal stops every command
    err = capsys.readouterr().err
    assert one_line(err) and "has not been reviewed" in err

    out_file.write_text(text.replace('reviewed_by: ""', "reviewed_by: QA lead").replace(
        'reviewed_on: ""', "reviewed_on: 2026-12-02"))
    named = load_config(config).thresholds
    plain = load_config(None, {"state_dir": str(site)}).thresholds
    assert decide(1.8, None, "", plain, BRAIN, {}).decision == "retake"
    applied = decide(1.8, None, "", named, BRAIN, {})
    assert applied.decision == "ok" and applied.threshold["source"] == "reviewed protocol CT|std brain 5mm"

    assert main(["calibrate", "--config", str(config), "--bootstrap", "0"]) == 0
    assert f"in force: thresholds.reviewed_file {out_file} (digest" in capsys.readouterr().out
    assert main(argv) == 1  # a reviewed file is never overwritten by a new proposal
    assert "has been reviewed (reviewed_by: QA lead)" in capsys.readouterr().err
    assert main([*argv, "--force"]) == 0


def test_scores_from_the_results_file_labelled_from_the_state(site: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["calibrate", "--state-dir", str(site), "--unanswered-ok-as-good", "--bootstrap", "0"]) == 0
    from_state = capsys.readouterr().out.splitlines()
    argv = ["calibrate", "--state-dir", str(site), "--results", str(site / "results.jsonl"),
            "--unanswered-ok-as-good", "--bootstrap", "0"]
    assert main(argv) == 0
    from_file = capsys.readouterr().out.splitlines()
    assert any("results " in line and "60 scored series" in line for line in from_file)
    table = [line for line in from_state if line.startswith(("modality", "protocol", "all"))]
    assert table and table == [line for line in from_file if line.startswith(("modality", "protocol", "all"))]


def test_it_finds_the_state_through_the_same_config_lookup_as_every_command(
        site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    config = tmp_path / "service.yaml"
    config.write_text(f"state_dir: {site}\n")
    monkeypatch.setenv("MEDIQA_CONFIG", str(config))
    assert main(["calibrate", "--bootstrap", "0"]) == 0
    assert f"state {site / 'state.sqlite'}: 60 results, 25 labelled series" in capsys.readouterr().out


@pytest.mark.slow
def test_plot_writes_a_png(site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    pytest.importorskip("matplotlib")
    png = tmp_path / "scores.png"
    assert main(["calibrate", "--state-dir", str(site), "--bootstrap", "0", "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("extra", "message"), [
    (["--target-false-alert-rate", "5"], "is not a share between 0 and 1"),
    (["--results", "/nonexistent/results.jsonl"], "does not exist"),
])
def test_bad_options_are_one_line(site: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str):
    assert main(["calibrate", "--state-dir", str(site), *extra]) == 1
    err = capsys.readouterr().err
    assert one_line(err) and message in err


def test_nothing_is_written_when_no_group_has_enough_labels(site: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]):
    out_file = tmp_path / "thresholds.yaml"
    assert main(["calibrate", "--state-dir", str(site), "--min-good", "100", "--out", str(out_file)]) == 1
    captured = capsys.readouterr()
    assert "too few labelled series (n=25: 11 good, 14 bad; need >= 100 good" in captured.out
    assert one_line(captured.err) and "nothing written" in captured.err and not out_file.exists()


def test_without_a_state_it_says_where_it_looked(tmp_path: Path, no_system_config: None,
                                                 capsys: pytest.CaptureFixture[str]):
    assert main(["calibrate", "--state-dir", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err
    assert one_line(err) and "no agent state at" in err
    assert not (tmp_path / "none").exists()


def test_help_teaches_the_labels_and_how_to_apply(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit):
        main(["calibrate", "--help"])
    text = capsys.readouterr().out
    for words in ("rescanned, should_have_alerted", "false_alert, accepted", "Clopper-Pearson",
                  "thresholds.reviewed_file", "too few labelled series", "examples:"):
        assert words in text


def test_mediqa_score_applies_a_reviewed_file_only_when_the_config_names_it(tmp_path: Path, no_system_config: None,
                                                                            capsys: pytest.CaptureFixture[str]):
    """The real pipeline on a generated CT series: the reviewed protocol threshold decides, and the result says so."""
    import json

    from mediqa.agent.samples import write_phantom_ct

    series = tmp_path / "export" / "phantom"
    write_phantom_ct(series, noise_hu=15.0, seed=3, slices=8, size=128)  # scores about 2.5: ok
    argv = ["score", str(series), "--json", "--scorer", "classical", "--state-dir", str(tmp_path / "state")]
    assert main(argv) == 0
    before = json.loads(capsys.readouterr().out.splitlines()[0])
    assert before["decision"] == "ok" and before["threshold"]["source"] == "modality CT"
    assert "reviewed_file" not in before["threshold"]

    key = "CT|" + " ".join(before["series_description"].lower().split())
    limit = min(4.0, round(before["score"] + 0.05, 2))
    reviewed = tmp_path / "thresholds.yaml"
    reviewed.write_text("kind: mediqa-reviewed-thresholds\nversion: 1\nreviewed_by: QA lead\nreviewed_on: 2026-12-02\n"
                        f'protocols:\n  "{key}":\n    retake_below: {limit}\n')  # a reviewer's own minimal file
    assert main([*argv, "--set", f"thresholds.reviewed_file={reviewed}"]) == 0
    after = json.loads(capsys.readouterr().out.splitlines()[0])
    assert after["score"] == before["score"] and after["decision"] == "retake"
    assert after["threshold"]["source"] == f"reviewed protocol {key}" and after["threshold"]["retake_below"] == limit
    assert after["threshold"]["reviewed_file"] == str(reviewed) and len(after["threshold"]["reviewed_digest"]) == 12
