"""Settings → Models: the GPU offload setting ([llm] n_gpu_layers), saved into the config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spamguard_ui.models_page import ModelsPage

from spamguard.config import LLMConfig, load_config
from spamguard.engine.session import gpu_offload_supported

CONFIG = """# my SpamGuard
[accounts.work]
host = "imap.example.org"
username = "me@example.org"

[llm]
# the model that explains
model = "smollm2-135m-instruct"
threads = 2
"""


def make_page(qtbot: Any, config: Path) -> ModelsPage:
    page = ModelsPage()
    qtbot.addWidget(page)
    page.set_llm(load_config(config).llm, config)
    page.show()
    qtbot.waitExposed(page)
    return page


def test_the_offload_setting_is_saved_validated_and_announced(
    qapp: Any, qtbot: Any, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG, encoding="utf-8")
    page = make_page(qtbot, config)
    assert page.gpu_setting() == "auto" and not page.gpu_apply.isEnabled()
    supported = gpu_offload_supported()
    if supported:
        assert "every layer on the GPU" in page.gpu_note.text()
    else:
        assert "CPU only" in page.gpu_note.text()

    # Off: CPU only.
    page.gpu_mode.setCurrentIndex(1)
    assert page.gpu_apply.isEnabled() and not page.gpu_layers.isEnabled()
    with qtbot.waitSignal(page.llm_changed) as changed:
        page.gpu_apply.click()
    assert changed.args[0].n_gpu_layers == 0
    assert load_config(config).llm.n_gpu_layers == 0
    assert "Saved" in page.gpu_note.text() and not page.gpu_apply.isEnabled()

    # A number of layers.
    page.gpu_mode.setCurrentIndex(2)
    assert page.gpu_layers.isEnabled()
    page.gpu_layers.setValue(12)
    with qtbot.waitSignal(page.llm_changed) as changed:
        page.gpu_apply.click()
    assert changed.args[0].n_gpu_layers == 12
    assert "12 layers on the GPU" in page.gpu_note.text()

    # Back to automatic; everything else in the file (comments included) is as it was.
    page.gpu_mode.setCurrentIndex(0)
    page.gpu_apply.click()
    text = config.read_text(encoding="utf-8")
    assert text.count("n_gpu_layers") == 1 and 'n_gpu_layers = "auto"' in text
    for line in CONFIG.splitlines():
        assert line in text.splitlines()
    cfg = load_config(config)
    assert cfg.llm.n_gpu_layers == "auto" and cfg.llm.threads == 2 and "work" in cfg.accounts


def test_a_broken_config_is_not_overwritten(qapp: Any, qtbot: Any, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG + "n_ctx = 12\n", encoding="utf-8")  # invalid: below 512
    page = ModelsPage()
    qtbot.addWidget(page)
    page.set_llm(LLMConfig(), config)
    page.show()
    qtbot.waitExposed(page)
    page.gpu_mode.setCurrentIndex(1)
    with qtbot.assertNotEmitted(page.llm_changed):
        page.gpu_apply.click()
    assert "Not saved" in page.gpu_note.text() and "n_ctx" in page.gpu_note.text()
    assert config.read_text(encoding="utf-8") == CONFIG + "n_ctx = 12\n"


def test_a_config_without_an_llm_table_gets_one(qapp: Any, qtbot: Any, tmp_path: Path) -> None:
    config = tmp_path / "sub" / "config.toml"  # no file yet: the app's first run
    page = ModelsPage()
    qtbot.addWidget(page)
    page.set_llm(LLMConfig(), config)
    page.show()
    page.gpu_mode.setCurrentIndex(1)
    page.gpu_apply.click()
    assert load_config(config).llm.n_gpu_layers == 0
    assert config.read_text(encoding="utf-8") == "[llm]\nn_gpu_layers = 0\n"
