"""The WinSW definition: valid XML with the Linux layout mapped to C:\\ProgramData\\MedIQA (not run on Windows)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
XML = REPO / "packaging" / "windows" / "mediqa-agent.xml"
DATA = "C:\\ProgramData\\MedIQA"


def test_winsw_definition() -> None:
    root = ET.parse(XML).getroot()
    assert root.tag == "service"
    assert root.findtext("id") == "mediqa-agent"
    assert root.findtext("executable", "").endswith("\\Scripts\\mediqa.exe")
    args = root.findtext("arguments", "")
    assert args.startswith("watch ")
    assert f'--config "{DATA}\\agent.yaml"' in args
    assert f'--state-dir "{DATA}\\state"' in args
    assert root.findtext("logpath") == f"{DATA}\\logs"
    actions = [e.get("action") for e in root.findall("onfailure")]
    assert actions[0] == "restart" and actions[-1] == "none"  # restarts, then gives up (no endless loop)
    env = {e.get("name"): e.get("value") for e in root.findall("env")}
    assert env["NO_COLOR"] == "1" and env["TQDM_DISABLE"] == "1"
    account = root.find("serviceaccount")
    assert account is not None and account.findtext("user") == "LocalService"  # not LocalSystem
