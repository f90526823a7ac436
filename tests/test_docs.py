"""Docs against their data: generated tables (scripts/doc_tables.py) and no machine paths."""

import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


doc_tables = _module(ROOT / "scripts" / "doc_tables.py")

# The tables that have a data file; a doc that loses its marker loses its check.
EXPECTED = {
    "README.md": {"default-model", "speed"},
    "docs/codec.md": {"operating-point", "refine-study", "refine-kodak", "speed"},
    "docs/zoo.md": {"zoo-bdrate", "tcq-training"},
    "docs/retraining.md": {"retraining", "retraining-compare"},
    "docs/evaluation.md": {"kodak-bdrate"},
    "docs/quantization.md": {"quant-study"},
}


def test_every_generated_table_equals_what_its_data_gives():
    stale = doc_tables.stale()
    assert stale == [], "tables out of date (run python scripts/doc_tables.py): " + "; ".join(stale)


def test_the_docs_keep_a_generated_table_for_each_data_file():
    for doc, kinds in EXPECTED.items():
        found = {block.kind for block in doc_tables.blocks((ROOT / doc).read_text())}
        assert kinds <= found, f"{doc} lost its generated tables {kinds - found}"
    named = {path for doc in doc_tables.documents() for block in doc_tables.blocks(doc.read_text())
             for path in doc_tables._sources(block)}
    unshown = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs" / "data").rglob("*.json")
                     if p not in named)
    assert unshown == [], f"data files no generated table shows: {unshown}"


def test_a_hand_edited_number_is_stale_and_the_generator_restores_it():
    text = (ROOT / "README.md").read_text()
    block = next(b for b in doc_tables.blocks(text) if b.kind == "default-model")
    edited = text.replace(block.body, block.body.replace("| usq | 0.", "| usq | 9.", 1))
    assert edited != text
    changed = next(b for b in doc_tables.blocks(edited) if b.kind == "default-model")
    assert changed.body != doc_tables.render(changed)
    assert doc_tables.rewrite(edited) == text


def test_a_table_follows_its_data(tmp_path, monkeypatch):
    manifest = json.loads((ROOT / "weights" / "manifest.json").read_text())
    default = manifest["models"][manifest["default"]]
    default["kodak"]["tcq8"]["bpp"] = 0.12345
    default["kodak"]["tcq8"]["psnr_rgb"] = 40.0
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(doc_tables, "ROOT", tmp_path)
    body = doc_tables.render(doc_tables.Block("default-model", ("weights/manifest.json",), ""))
    lambda_t = default["kodak"]["tcq8"]["lambda_t"]
    assert f"| tcq8 (delta 0.6) | 0.1235 | 40.00 | {lambda_t:g} |" in body
    assert f"`{manifest['default']}`" in body


def test_the_speed_table_states_the_measuring_condition(tmp_path, monkeypatch):
    run = json.loads((ROOT / "docs" / "data" / "codec_speed_default.json").read_text())
    run.update(load_average_before=[7.5, 6.0, 3.25], load_average_after=[8.0, 6.5, 3.5],
               created="2026-01-02T03:04:05+00:00", device="cpu: X (2 cores)",
               git_commit="0123456789abcdef")
    (tmp_path / "speed.json").write_text(json.dumps(run))
    monkeypatch.setattr(doc_tables, "ROOT", tmp_path)
    body = doc_tables.render(doc_tables.Block("speed", ("speed.json",), ""))
    assert ("2026-01-02, cpu: X (2 cores), load average (1/5/15 min) 7.5/6/3.25 before, "
            "8/6.5/3.5 after; commit 0123456789ab") in body
    assert body.count("\n| ") == 1 + len(run["results"])  # header + one row per quantizer


def test_unknown_kinds_and_missing_data_are_errors():
    with pytest.raises(doc_tables.DocTableError, match="unknown table kind"):
        doc_tables.render(doc_tables.Block("no-such-kind", ("README.md",), ""))
    with pytest.raises(doc_tables.DocTableError, match="no data file matches"):
        doc_tables.render(doc_tables.Block("speed", ("docs/data/no-such-*.json",), ""))
    with pytest.raises(doc_tables.DocTableError, match="lacks"):
        doc_tables.render(doc_tables.Block("speed", ("weights/manifest.json",), ""))


def test_check_exits_1_on_a_stale_doc_and_rewrite_fixes_it(tmp_path, monkeypatch, capsys):
    for name in ("README.md", "weights/manifest.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    text = (tmp_path / "README.md").read_text()
    readme_blocks = [b for b in doc_tables.blocks(text) if b.kind != "default-model"]
    for block in readme_blocks:  # keep only the table whose data is in tmp_path
        text = text.replace(f"{block.body}<!-- end table -->", "<!-- end table -->")
        text = text.replace(f"<!-- table: {block.kind} {' '.join(block.sources)} -->\n", "")
    (tmp_path / "README.md").write_text(text.replace("| usq | 0.", "| usq | 9.", 1))
    monkeypatch.setattr(doc_tables, "ROOT", tmp_path)
    assert doc_tables.main(["--check"]) == 1
    assert "stale: README.md: default-model" in capsys.readouterr().out
    assert doc_tables.main([]) == 0
    assert doc_tables.main(["--check"]) == 0
    assert (tmp_path / "README.md").read_text() == text


def test_the_model_table_equals_the_manifest(tmp_path):
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        zoo_report = _module(ROOT / "experiments" / "zoo_report.py")
    finally:
        sys.path.remove(str(ROOT / "experiments"))
    zoo_report.write_model_table(tmp_path / "zoo_models.md")
    assert (tmp_path / "zoo_models.md").read_text() == (
        ROOT / "docs" / "results" / "zoo_models.md").read_text()


BD_TABLES = ["docs/baselines/bdrate.md", "docs/baselines/bdrate_msssim.md",
             "docs/results/zoo_bdrate.md", "docs/results/zoo_bdrate_msssim.md"]


@pytest.mark.parametrize("table", BD_TABLES)
def test_a_bd_table_equals_what_bdrate_computes_from_its_curves(table, tmp_path, monkeypatch):
    from trellic.cli import main as trellic

    sources = doc_tables._bd_curves(ROOT / table).values()
    files = [s for s in sources if not s.startswith("reference:")]
    references = [arg for s in sources if s.startswith("reference:")
                  for arg in ("--reference", s.removeprefix("reference:"))]
    metric = "ms-ssim" if table.endswith("_msssim.md") else "psnr"
    monkeypatch.chdir(ROOT)  # the table names its curves relative to the repository
    out = tmp_path / "table.md"
    assert trellic(["bdrate", "--table", *files, *references, "--metric", metric,
                    "-o", str(out)]) == 0
    assert out.read_text() == (ROOT / table).read_text(), f"{table} is stale"


TEXT = {".py", ".md", ".json", ".toml", ".txt", ".cfg", ".sh", ".yml", ".yaml", ".html", ""}
SKIP = {"runs", "out", "build", "dist", "__pycache__"}  # and hidden names but .ci: not committed
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:work|root|home|tmp)/")


def test_committed_text_names_no_machine_path():
    found = []
    for path in ROOT.rglob("*"):
        parts = path.relative_to(ROOT).parts
        if (any(p.startswith(".") and p != ".ci" or p in SKIP or p.endswith(".egg-info")
                for p in parts) or not path.is_file() or path.suffix not in TEXT):
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if MACHINE_PATH.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:80]}")
    assert found == [], "absolute machine paths (use relative paths or settings):\n" + "\n".join(
        found)


def test_the_rate_against_a_step_sweep_is_read_at_equal_psnr():
    import quant_tables  # on the path doc_tables puts its sibling modules on

    sweep = {"0.9": {"bpp": 0.4, "psnr": 31.0}, "1.0": {"bpp": 0.2, "psnr": 30.0}}
    assert quant_tables.rate_vs_sweep({"bpp": 0.2, "psnr": 30.0}, sweep) == pytest.approx(0)
    middle = quant_tables.rate_vs_sweep({"bpp": 0.2, "psnr": 30.5}, sweep)
    assert middle == pytest.approx(100 * (0.2 / (0.2 * 2**0.5) - 1))  # log-rate halfway
    assert quant_tables.rate_vs_sweep({"bpp": 0.1, "psnr": 31.5}, sweep) is None
