"""Write the .deb's /etc/mediqa/agent.yaml from the documented default, configs/agent.yaml.

Line edits only, so every comment of the default survives: ``state_dir`` becomes /var/lib/mediqa
(the unit's StateDirectory=), ``watch.folder`` must stay empty (the site sets it: postinst does not
start the service until it is set), and a header says what the file is. Stdlib only.

    python3 packaging/deb/make_conffile.py configs/agent.yaml build/deb/agent.yaml
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

STATE_DIR = "/var/lib/mediqa"

HEADER = """\
# /etc/mediqa/agent.yaml: configuration of the mediqa-agent service (installed by the mediqa-edge package).
# A dpkg conffile: your edits are kept on upgrade. Set watch.folder, then start the service:
#   sudoedit /etc/mediqa/agent.yaml && sudo systemctl start mediqa-agent
# Full steps (export permissions, network shares, monitoring): /usr/share/doc/mediqa-edge/install.md
# Under the service, state_dir is always /var/lib/mediqa (the unit passes --state-dir; nothing else is writable).
#
"""

_STATE = re.compile(r"^state_dir:[ \t]*(\S+)(?P<rest>[ \t]+#.*)?$", re.MULTILINE)
_FOLDER = re.compile(r"^[ \t]+folder:[ \t]*(?P<value>\"\"|''|)(?:[ \t]+#.*)?$", re.MULTILINE)


def render(default: str) -> str:
    """The conffile's text from the default config's text (raises ValueError if its layout changed)."""
    text, n = _STATE.subn(lambda m: f"state_dir: {STATE_DIR}" + (m.group("rest") or ""), default)
    if n != 1:
        raise ValueError("configs/agent.yaml: expected exactly one top-level 'state_dir:' line")
    if len(_FOLDER.findall(text)) != 1:
        raise ValueError("configs/agent.yaml: expected one empty 'folder:' line under watch:")
    return HEADER + text


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    src, dest = Path(argv[0]), Path(argv[1])
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(render(src.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
