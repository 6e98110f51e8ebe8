"""The live panels (``live/live-panel.js``, ``lmlab.live``): toy-gpt in the page beside the exact truth.

* The ONNX export (what the page runs) gives lmlab's logits and attention patterns on 60 prefixes,
  run with onnxruntime in Python (max absolute difference at most 1e-4).
* The page's exact next-word distribution (the grammar's tables, JavaScript in Chromium) equals
  ``ToyLanguage.next_token_distribution`` on 260 random prefixes (total variation at most 1e-9), and
  finds the same impossible word in impossible ones.
* On a small site of its own (the same files the book's ``_static/`` gets): nothing of the runtime or
  the model loads before the reader presses start; an impossible prefix is flagged in words, with no
  dialog; opened from the file system, a panel says in one line how to serve the book.
* In the built book (the session's one build): chapter 2's and chapter 4's panels, started and typed
  into from the keyboard in the theme's dark mode, read back lmlab's numbers (within 1e-3) for three
  sentences each; the time from start to the first answer and per keystroke is printed and fails past
  10 s and 500 ms (on a machine loaded by others a slow keystroke is reported, not failed, except
  under ``LMLAB_STRICT_BUDGETS=1``); axe-core finds no serious violation in a started panel, its
  figures have text alternatives and their text is readable in dark mode; the page's HTML stays
  under 1 MB.
"""
from __future__ import annotations

import os
import random
import statistics
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, BookBuild, _flag, loud
from gates import a11y, contrast, sites

sys.path.insert(0, str(ROOT / "_ext"))
import course  # noqa: E402  (the Sphinx extension that copies the live assets)

from lmlab import corpus, generate, live, zoo  # noqa: E402

FIRST_ANSWER_LIMIT_S = 10.0
KEYSTROKE_LIMIT_MS = 500.0
ATTENTION_SENTENCES = ["the dogs that the boy feeds bark", "a queen near the kings washes herself",
                       "the code is ka lo mu , ka lo"]
GENERATION_SENTENCES = ["the girl", "the dogs that the boy feeds", "the world is everything that is the"]
IMPOSSIBLE = "the dog meows"  # only cats meow: impossible at its third word


# --- a small site with the live assets ----------------------------------------------------------------

HEAD = '<link rel="stylesheet" href="_static/live-panel.css"><script defer src="_static/live-panel.js"></script>'


@pytest.fixture(scope="module")
def live_site(tmp_path_factory) -> Path:
    """Two pages with a panel each, and ``_static/`` as the book's extension writes it."""
    folder = tmp_path_factory.mktemp("live-site")
    pages = {f"{kind}.html": sites.theme_page(
        f'<p>Text.</p><div class="lmlab-live" data-panel="{kind}"><p>The live panel runs in the rendered '
        f'book.</p></div>', title=kind.title(), plotly=True, head=HEAD) for kind in ("attention", "generation")}
    sites.write_site(folder, pages)
    course._copy_live_assets(folder / "_static")
    return folder


@pytest.fixture(scope="module")
def toy_gpt():
    model, tok = zoo.load("toy-gpt")
    return model.eval(), tok


def _prefixes(n: int, seed: int, impossible: int = 0) -> list[list[str]]:
    """Random prefixes of the toy language: cut sentences, some after whole sentences, some empty;
    with ``impossible`` more where one word is replaced by a random word of the vocabulary."""
    lang = corpus.toy()
    rng = random.Random(seed)
    sents = lang.sentences(4 * n, seed=seed)
    out: list[list[str]] = [[]]
    while len(out) < n:
        s = sents[len(out) % len(sents)]
        cut = s[: rng.randrange(0, len(s) + 1)]
        if rng.random() < 0.25:
            cut = sents[(len(out) * 7 + 3) % len(sents)] + cut
        out.append(cut)
    for _ in range(impossible):
        s = list(sents[rng.randrange(len(sents))])
        i = rng.randrange(len(s))
        s[i] = rng.choice(lang.vocab)
        out.append(s[: i + 1 + rng.randrange(0, 3)])
    return out


# --- the ONNX export ----------------------------------------------------------------------------------

def test_onnx_export_matches_lmlab(live_site: Path, toy_gpt):
    model, tok = toy_gpt
    onnx_file = live_site / "_static" / "live" / "toy-gpt.onnx"
    prefixes = _prefixes(60, seed=3)
    prefixes.append(corpus.toy().token_stream(40, seed=5))  # longer than the context: cropped as the page does
    worst_logits = worst_attention = 0.0
    for words in prefixes:
        ids = live.model_ids(tok, words, model.config.context_length)
        logits, attention = live.run_onnx(onnx_file, ids)
        ref_logits, ref_attention = live.reference_outputs(model, ids)
        assert logits.shape == ref_logits.shape and attention.shape == ref_attention.shape
        worst_logits = max(worst_logits, float(np.abs(logits - ref_logits).max()))
        worst_attention = max(worst_attention, float(np.abs(attention - ref_attention).max()))
    print(f"ONNX vs lmlab on {len(prefixes)} prefixes: logits {worst_logits:.2e}, attention {worst_attention:.2e}")
    assert worst_logits <= 1e-4 and worst_attention <= 1e-4


def test_grammar_tables_cover_the_grammar():
    tables = live.grammar_tables()
    lang = corpus.toy()
    assert tables["vocab"] == lang.vocab and tables["states"] == lang._derivation_stats[2]
    off = tables["offsets"]
    assert len(off) == tables["states"] + 1 and off[-1] == len(tables["token"]) == len(tables["prob"])
    sums = [sum(tables["prob"][off[s]:off[s + 1]]) for s in range(tables["states"])]
    assert sum(1 for x in sums if x == 0) == 1  # FINAL only
    assert all(x == 0 or abs(x - 1) < 1e-12 for x in sums)


# --- the exact truth in the page --------------------------------------------------------------------

def test_page_grammar_matches_lmlab(live_site: Path, chromium):
    lang = corpus.toy()
    prefixes = _prefixes(200, seed=11, impossible=60)
    with sites.serve(live_site) as base:
        page = chromium.new_page()
        try:
            page.goto(f"{base}attention.html", wait_until="load")
            results = page.evaluate("""async (prefixes) => {
                const t = await (await fetch('_static/live/toy-grammar.json')).json();
                const g = new window.lmlabLive.ToyGrammar(t);
                return prefixes.map(p => g.nextDistribution(p));
            }""", prefixes)
        finally:
            page.close()
    worst, n_possible, n_impossible = 0.0, 0, 0
    for words, got in zip(prefixes, results):
        try:
            want = lang.next_token_distribution(words)
        except ValueError as err:
            n_impossible += 1
            assert "impossible" in got, f"{words}: lmlab says {err}, the page gives {got}"
            start = max((i + 1 for i, w in enumerate(words) if w == "."), default=0)
            assert got["impossible"]["index"] == next(
                i for i in range(start, len(words)) if _impossible_at(lang, words[start:i + 1])), words
            continue
        n_possible += 1
        assert "dist" in got, f"{words}: lmlab gives a distribution, the page {got}"
        page_dist = dict(got["dist"])
        assert set(page_dist) == set(want), words
        tv = 0.5 * sum(abs(page_dist[w] - p) for w, p in want.items())
        worst = max(worst, tv)
        assert [w for w, _ in got["dist"]] == list(want), f"{words}: order differs"
    print(f"page vs lmlab: {n_possible} prefixes, worst total variation {worst:.1e}; {n_impossible} impossible")
    assert n_possible >= 200 and n_impossible >= 20
    assert worst <= 1e-9


def _impossible_at(lang, words) -> bool:
    try:
        lang.next_token_distribution(words)
        return False
    except ValueError:
        return True


# --- loading on demand, impossible prefixes, file:// ---------------------------------------------------

def _start(page, timeout_ms: int = 60_000) -> float:
    """Press the panel's start button from the keyboard; returns the in-page time to the first answer (s)."""
    page.focus("button.lmlab-live-start")
    page.keyboard.press("Enter")
    page.wait_for_selector(".lmlab-live[data-state=ready], .lmlab-live[data-state=error]", timeout=timeout_ms)
    panel = page.locator(".lmlab-live")
    assert panel.get_attribute("data-state") == "ready", panel.inner_text()
    return float(panel.get_attribute("data-first-answer-ms")) / 1000


def _answers(page) -> int:
    return int(page.locator(".lmlab-live").get_attribute("data-answers") or 0)


def _wait_answered(page, n: int) -> None:
    """Wait until the panel has answered more than ``n`` times and every input so far is answered."""
    page.wait_for_function(f"(() => {{ const d = document.querySelector('.lmlab-live').dataset; "
                           f"return Number(d.answers) > {n} && d.busy === '0'; }})()")


def _type(page, text: str) -> list[float]:
    """Clear the sentence, then type ``text`` key by key; returns each keystroke's in-page latency (ms)."""
    box = page.locator("input.lmlab-live-sentence")
    page.wait_for_function("document.querySelector('.lmlab-live').dataset.busy === '0'")
    n = _answers(page)
    box.fill("")
    _wait_answered(page, n)
    times = []
    for ch in text:
        n = _answers(page)
        box.press("Space" if ch == " " else ch)
        _wait_answered(page, n)
        times.append(float(page.locator(".lmlab-live").get_attribute("data-latency-ms")))
    return times


def test_nothing_loads_before_start_and_impossible_is_said_in_words(live_site: Path, chromium):
    with sites.serve(live_site) as base:
        page = chromium.new_page()
        requests: list[str] = []
        dialogs: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        try:
            page.goto(f"{base}generation.html", wait_until="load")
            page.wait_for_load_state("networkidle")
            early = [u for u in requests if "/_static/live/" in u]
            assert not early, f"loaded before the panel was started: {early}"
            _start(page)
            late = {u.split("/_static/")[-1].split("?")[0] for u in requests if "/_static/live/" in u}
            assert {"live/toy-gpt.json", "live/toy-gpt.onnx", "live/toy-grammar.json",
                    "live/ort/ort.wasm.min.js", "live/ort/ort-wasm-simd-threaded.wasm"} <= late, late
            _type(page, IMPOSSIBLE)
            panel = page.locator(".lmlab-live")
            verdict = page.inner_text(".lmlab-live-verdict")
            assert panel.get_attribute("data-grammar") == "impossible"
            assert "cannot continue" in verdict and "\u201cmeows\u201d (word 3)" in verdict, verdict
            assert not panel.get_attribute("data-error")
            assert page.locator(".lmlab-live-table tbody tr").count() > 0  # toy-gpt still answers
        finally:
            page.close()
    assert not dialogs, dialogs


def test_opened_from_the_file_system_it_says_how_to_serve(live_site: Path, chromium):
    page = chromium.new_page()
    try:
        page.goto((live_site / "attention.html").as_uri(), wait_until="load")
        page.wait_for_selector(".lmlab-live[data-state=file]")
        status = page.inner_text(".lmlab-live-status").strip()
        assert page.locator("button.lmlab-live-start").count() == 0
    finally:
        page.close()
    assert "\n" not in status and "python -m http.server" in status, status


# --- the chapters' panels in the built book ---------------------------------------------------------------

def _panel_page(book: BookBuild, kind: str) -> str:
    for docname in ("chapters/02-attention", "chapters/04-generation"):
        path = book.page(docname)
        if path.is_file() and f'data-panel="{kind}"' in path.read_text(encoding="utf-8"):
            return docname
    pytest.fail(f"no chapter page of the built book holds a {kind!r} live panel")


def _cells(page) -> list[list[str]]:
    return page.evaluate("""() => Array.from(document.querySelectorAll('.lmlab-live-table tr')).map(
        tr => Array.from(tr.children).map(c => c.textContent))""")


def _check_attention(page, model, tok) -> float:
    """Compare the weights table with lmlab's pattern; returns the largest difference."""
    layer = int(page.locator(".lmlab-live select").nth(0).input_value())
    head = int(page.locator(".lmlab-live select").nth(1).input_value())
    rows = _cells(page)
    tokens = [c.split(" ", 1)[1] for c in rows[0][1:]]
    ids = tok.encode_tokens(tokens)
    _, pattern = live.reference_outputs(model, ids)
    want = pattern[layer, 0, head]
    worst = 0.0
    for i, row in enumerate(rows[1:]):
        for j in range(i + 1):
            worst = max(worst, abs(float(row[1 + j]) - float(want[i, j])))
    return worst


def _check_generation(page, model, tok, settings: dict) -> float:
    """Compare the probability table with lmlab (model at T=1, after the controls, exact truth)."""
    lang = corpus.toy()
    words = page.locator("input.lmlab-live-sentence").input_value().split()
    prompt = torch.tensor([live.model_ids(tok, words, model.config.context_length)])
    raw = generate.next_token_distribution(model, prompt)[0]
    filtered = generate.next_token_distribution(model, prompt, **settings)[0]
    exact = lang.next_token_distribution(words)
    worst = 0.0
    rows = _cells(page)[1:]
    assert rows, "the probability table is empty"
    for word, p_raw, p_filtered, p_exact in rows:
        i = tok.token_to_id(word)
        worst = max(worst, abs(float(p_raw) - float(raw[i])), abs(float(p_filtered) - float(filtered[i])),
                    abs(float(p_exact) - exact.get(word, 0.0)))
    return worst


def _panel_text_contrast(page) -> list:
    """:func:`gates.contrast.figure_text_contrast` for the panel's figures only."""
    import base64

    results = []
    for index, gd in enumerate(page.query_selector_all(".lmlab-live .plotly-graph-div")):
        gd.scroll_into_view_if_needed()
        texts = gd.evaluate(contrast.TEXTS_JS)
        if not texts:
            continue
        gd.evaluate(contrast.SET_TEXT_VISIBILITY_JS, "hidden")
        try:
            png = gd.screenshot(animations="disabled")
        finally:
            gd.evaluate(contrast.SET_TEXT_VISIBILITY_JS, "")
        backgrounds = page.evaluate(contrast.BACKGROUNDS_JS, [base64.b64encode(png).decode(), texts])
        results += [contrast.text_contrast(index, info, bg) for info, bg in zip(texts, backgrounds)]
    return results


def _judge_times(label: str, first_s: float, keys_ms: list[float]) -> list[str]:
    med = statistics.median(keys_ms)
    print(f"{label}: start to first answer {first_s:.2f} s; per keystroke median {med:.1f} ms, "
          f"max {max(keys_ms):.1f} ms over {len(keys_ms)} keystrokes (goals 3 s, 100 ms; limits 10 s, 500 ms)")
    problems = []
    if first_s > FIRST_ANSWER_LIMIT_S:
        problems.append(f"{label}: first answer after {first_s:.1f} s (limit {FIRST_ANSWER_LIMIT_S} s)")
    slow = [t for t in keys_ms if t > KEYSTROKE_LIMIT_MS]
    if slow:
        problems.append(f"{label}: {len(slow)} keystroke(s) over {KEYSTROKE_LIMIT_MS:.0f} ms: {slow}")
    return problems


@pytest.mark.parametrize("kind", ["attention", "generation"])
def test_chapter_panel_in_the_book(book: BookBuild, site: str, chromium, toy_gpt, artifacts: Path, kind: str):
    model, tok = toy_gpt
    docname = _panel_page(book, kind)
    html_bytes = book.page(docname).stat().st_size
    assert html_bytes < 1_000_000, f"{docname}.html is {html_bytes:,} bytes"
    errors: list[str] = []
    shot = artifacts / "screenshots" / "live" / f"{kind}-dark.png"
    with contrast.open_dark(chromium, f"{site}{docname}.html") as page:
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.locator(".lmlab-live").scroll_into_view_if_needed()
        first = _start(page)
        keys: list[float] = []
        worst = 0.0
        if kind == "attention":
            for n, sentence in enumerate(ATTENTION_SENTENCES):
                keys += _type(page, sentence)
                if n == 1:  # choose another head from the keyboard
                    n_answers = _answers(page)
                    page.focus(".lmlab-live select >> nth=1")
                    page.keyboard.press("ArrowDown")
                    _wait_answered(page, n_answers)
                worst = max(worst, _check_attention(page, model, tok))
        else:
            settings = [{}, {"temperature": 0.7, "top_k": 5}, {"temperature": 1.3, "top_p": 0.8}]
            for sentence, s in zip(GENERATION_SENTENCES, settings):
                page.locator(".lmlab-live input[type=range] >> nth=0").fill(str(s.get("temperature", 1.0)))
                page.locator(".lmlab-live input[type=number]").fill(str(s.get("top_k", 0)))
                page.locator(".lmlab-live input[type=range] >> nth=1").fill(str(s.get("top_p", 1.0)))
                keys += _type(page, sentence)
                worst = max(worst, _check_generation(page, model, tok, s))
            n_answers = _answers(page)
            page.get_by_role("button", name="Sample the next word").click()
            _wait_answered(page, n_answers + 1)
            assert "Sampled \u201c" in page.inner_text(".lmlab-live-note")
        print(f"{docname}: largest difference from lmlab {worst:.1e}")
        assert worst <= 1e-3
        page.evaluate("() => document.querySelectorAll('.lmlab-live details').forEach(d => { d.open = true; })")
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.locator(".lmlab-live").screenshot(path=str(shot))
        violations = a11y.run_axe(page, ".lmlab-live")
        missing = a11y.figures_without_alternative(page, ".lmlab-live")
        texts = _panel_text_contrast(page)
        panel_figures = page.locator(".lmlab-live .plotly-graph-div").count()
    assert not errors, errors
    problems = a11y.axe_problems(violations)
    assert not problems, "\n".join(problems)
    assert not missing, missing
    assert panel_figures >= 1
    low = contrast.contrast_problems(texts)
    assert not low, "\n".join(low)
    timing = _judge_times(f"{kind} panel ({docname})", first, keys)
    if timing:
        loaded = os.getloadavg()[0] > (os.cpu_count() or 1)
        if loaded and not _flag("LMLAB_STRICT_BUDGETS"):
            loud("Live panel slower than its limits on a machine loaded by others (reported, not failed): "
                 + "; ".join(timing))
        else:
            pytest.fail("; ".join(timing))
