# SPDX-License-Identifier: Apache-2.0
"""The polkit actions built from data/org.execd.Execd1.policy.in carry German and Chinese
descriptions and messages (merged from po/ by meson's i18n.merge_file), and name exactly the
actions the daemon asks for (daemon/polkit.h)."""
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

BUILD_ROOT = Path(os.environ.get("EXECD_BUILD_ROOT", Path(__file__).resolve().parents[2] / "build"))
SOURCE_ROOT = Path(os.environ.get("EXECD_SOURCE_ROOT", Path(__file__).resolve().parents[2]))
POLICY = BUILD_ROOT / "data" / "org.execd.Execd1.policy"
LANG = "{http://www.w3.org/XML/1998/namespace}lang"


@pytest.fixture(scope="module")
def actions():
    assert POLICY.is_file(), f"{POLICY} missing: build the project"
    return {a.get("id"): a for a in ET.parse(POLICY).getroot().iter("action")}


def test_actions_are_the_daemons(actions):
    header = (SOURCE_ROOT / "daemon" / "polkit.h").read_text()
    asked = set(re.findall(r'#define POLKIT_ACTION_\w+ "([^"]+)"', header))
    assert asked and set(actions) == asked


@pytest.mark.parametrize("lang,sample", [("de", "Authentifizierung"), ("zh_CN", "认证")])
def test_every_text_translated(actions, lang, sample):
    for action_id, action in actions.items():
        for tag in ("description", "message"):
            english = [e.text for e in action.findall(tag) if e.get(LANG) is None]
            translated = [e.text for e in action.findall(tag) if e.get(LANG) == lang]
            assert len(english) == 1 and len(translated) == 1, (action_id, tag, lang)
            assert translated[0] and translated[0] != english[0], (action_id, tag, lang)
        message = [e.text for e in action.findall("message") if e.get(LANG) == lang][0]
        assert sample in message, (action_id, lang, message)


def test_defaults_never_allow_without_authentication(actions):
    for action_id, action in actions.items():
        d = action.find("defaults")
        assert d.findtext("allow_any") == "no" and d.findtext("allow_inactive") == "no", action_id
        assert d.findtext("allow_active").startswith("auth_admin"), action_id
