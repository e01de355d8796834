"""The shipped knowledge base and the config file: validation with file, key and reason."""

from __future__ import annotations

import shutil
import tomllib
from datetime import date
from pathlib import Path

import pytest

from knowledge.loader import DATA, KnowledgeBase, KnowledgeError, load
from knowledge.match import known_message

REQUIRED = {
    "colab",
    "kaggle",
    "binder",
    "azure-notebooks",
    "cocalc",
    "datalore",
    "local-jupyter",
    "sagemaker-studio-lab",
    "codespaces",
    "deepnote",
    "lightning",
    "paperspace",
    "hf-spaces",
    "jupyterlite",
}


def test_every_platform_of_the_brief_is_there(kb: KnowledgeBase) -> None:
    assert set(kb.platforms) >= REQUIRED


def test_azure_is_retired_with_successors(kb: KnowledgeBase) -> None:
    az = kb.platforms["azure-notebooks"]
    assert not az.alive
    assert az.lifecycle.retired_on == date(2021, 1, 15)
    assert "codespaces" in az.lifecycle.successors


def test_aliases_resolve(kb: KnowledgeBase) -> None:
    assert kb.resolve("Google Colab").id == "colab"
    assert kb.resolve("kaggle kernels").id == "kaggle"
    assert kb.resolve("azure notebooks").id == "azure-notebooks"
    assert kb.resolve("nope") is None


def test_facts_are_dated_and_sourced(kb: KnowledgeBase) -> None:
    for p in kb.platforms.values():
        assert p.last_verified <= date(2026, 12, 31)
        assert p.sources and all(str(u).startswith("https://") for u in p.sources)
        if p.alive:
            assert 2 <= len(p.move_steps) <= 4


def test_known_messages_match_pasted_errors(kb: KnowledgeBase) -> None:
    pasted = "MessageError: Failed to assign a backend. There is a restriction in your location"
    m = known_message(kb, pasted)
    assert m is not None and m.platform == "colab" and m.not_an_outage
    assert (
        known_message(kb, "There is no runtime available right now").platform
        == "sagemaker-studio-lab"
    )


def copy_data(tmp_path: Path) -> Path:
    dest = tmp_path / "data"
    shutil.copytree(DATA, dest)
    return dest


def test_missing_required_field_names_file_and_key(tmp_path: Path) -> None:
    data = copy_data(tmp_path)
    f = data / "platforms" / "kaggle.toml"
    f.write_text(f.read_text().replace('summary = "', 'nosummary = "', 1))
    with pytest.raises(KnowledgeError) as err:
        load(data_dir=data)
    assert "kaggle.toml" in str(err.value) and "summary" in str(err.value)


def test_duplicate_alias_rejected(tmp_path: Path) -> None:
    data = copy_data(tmp_path)
    f = data / "platforms" / "kaggle.toml"
    f.write_text(f.read_text().replace("aliases = [", 'aliases = ["google colab", ', 1))
    with pytest.raises(KnowledgeError, match="google colab"):
        load(data_dir=data)


def test_bad_url_and_bad_date_rejected(tmp_path: Path) -> None:
    data = copy_data(tmp_path)
    f = data / "platforms" / "binder.toml"
    raw = f.read_text()
    f.write_text(raw.replace('url = "https://', 'url = "not a url ', 1))
    with pytest.raises(KnowledgeError, match=r"binder\.toml: url"):
        load(data_dir=data)
    f.write_text(raw.replace("last_verified = 20", 'last_verified = "yesterday"\n#', 1))
    with pytest.raises(KnowledgeError, match="last_verified"):
        load(data_dir=data)


def test_broken_toml_rejected(tmp_path: Path) -> None:
    data = copy_data(tmp_path)
    (data / "tips.toml").write_text("[[tip]\nid=")
    with pytest.raises(KnowledgeError, match=r"tips\.toml: not valid TOML"):
        load(data_dir=data)


def test_config_adds_a_platform_and_overrides_one(tmp_path: Path) -> None:
    colab = tomllib.loads((DATA / "platforms" / "colab.toml").read_text())
    cfg = tmp_path / "nbhelp.toml"
    cfg.write_text(
        """
[[platform]]
id = "ourhub"
name = "PyData Accra JupyterHub"
aliases = ["accra hub"]
url = "https://hub.example.org/"
summary = "Our community's own JupyterHub."
languages = ["python"]
collaboration = "sharing"
private = "yes"
move_steps = ["Log in with your meetup account", "Upload your .ipynb"]
priority = 99
last_verified = 2026-11-01
sources = ["https://hub.example.org/about"]
[platform.lifecycle]
state = "alive"
[platform.accelerators]
gpu = "no"
tpu = "no"
[platform.limits]
summary = "2 GB RAM"
[platform.storage]
persistent = "yes"
[platform.signup]
account = "yes"
phone = "no"
card = "no"
[platform.access]
internet = "yes"
offline = "no"
bandwidth = "low"

[override.colab]
priority = 5
[override.colab.limits]
ram = "12 GB"
"""
    )
    kb = load(cfg)
    assert kb.resolve("accra hub").name == "PyData Accra JupyterHub"
    assert kb.platforms["colab"].priority == 5
    assert kb.platforms["colab"].limits.ram == "12 GB"
    assert kb.platforms["colab"].limits.summary == colab["limits"]["summary"]  # tables merge


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("[override.nosuch]\npriority = 1\n", "override.nosuch: no platform"),
        ("[override.colab]\npriority = 500\n", "override.colab: priority"),
        ('[[platform]]\nid = "colab"\n', "already exists"),
    ],
)
def test_invalid_config_fails_with_file_key_reason(tmp_path: Path, text: str, expect: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(KnowledgeError) as err:
        load(cfg)
    assert str(cfg) in str(err.value) and expect in str(err.value)
