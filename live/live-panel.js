/* The book's live panels: toy-gpt running in the page beside the toy language's exact answers.
 *
 * A chapter places a panel with <div class="lmlab-live" data-panel="attention|generation"> (its text
 * is what Colab or a page without this script shows). This file is small and loads with the page;
 * nothing else does until the reader presses "Start": then onnxruntime-web (single-threaded
 * WebAssembly, from _static/live/ort/), the ONNX export of toy-gpt and the grammar's tables
 * (_static/live/, written by lmlab.live at build time) are fetched once for the whole page.
 *
 * The exact next-word distribution is the forward algorithm of lmlab/corpus.py
 * (ToyLanguage._prefix_alpha and next_token_distribution) over the exported tables.
 * Figures are drawn with the site's plotly.js and lmlab's house template.
 */
(function () {
  "use strict";

  var SCRIPT = document.currentScript;
  var STATIC = new URL(".", SCRIPT ? SCRIPT.src : document.baseURI).href; // .../_static/
  var LIVE = STATIC + "live/";
  var ORT = LIVE + "ort/";
  var SERVE_HINT = "The live panel needs the book served over HTTP: in the folder of the built book " +
    "(_build/html) run python -m http.server, then open http://127.0.0.1:8000/ in your browser.";

  // --- the toy language's exact next-word distribution ------------------------------------------

  function ToyGrammar(t) {
    if (t.format !== "lmlab-toy-grammar-1") throw new Error("unknown grammar format " + t.format);
    this.vocab = t.vocab;
    this.index = new Map(t.vocab.map(function (w, i) { return [w, i]; }));
    this.eos = t.eos;
    this.off = Int32Array.from(t.offsets);
    this.tok = Int32Array.from(t.token);
    this.prob = Float64Array.from(t.prob);
    this.next = Int32Array.from(t.next);
  }

  // One forward step: the unnormalised state distribution after emitting token id `tokId`.
  ToyGrammar.prototype.step = function (alpha, tokId) {
    var out = new Map();
    alpha.forEach(function (a, s) {
      for (var k = this.off[s]; k < this.off[s + 1]; k++) {
        if (this.tok[k] === tokId) {
          var n = this.next[k];
          out.set(n, (out.get(n) || 0) + a * this.prob[k]);
        }
      }
    }, this);
    return out;
  };

  // words: array of strings. Returns {dist: [[word, p], ...] most probable first} or
  // {unknown: {index, word}} or {impossible: {index, word, before: [...]}}.
  ToyGrammar.prototype.nextDistribution = function (words) {
    for (var u = 0; u < words.length; u++) {
      if (!this.index.has(words[u])) return { unknown: { index: u, word: words[u] } };
    }
    var start = words.lastIndexOf(this.eos) + 1;
    var alpha = new Map([[0, 1.0]]);
    for (var i = start; i < words.length; i++) {
      alpha = this.step(alpha, this.index.get(words[i]));
      var z = 0;
      alpha.forEach(function (a) { z += a; });
      if (z === 0) return { impossible: { index: i, word: words[i], before: words.slice(start, i) } };
      alpha.forEach(function (a, s) { alpha.set(s, a / z); });
    }
    var dist = new Map();
    alpha.forEach(function (a, s) {
      for (var k = this.off[s]; k < this.off[s + 1]; k++) {
        var t = this.tok[k];
        dist.set(t, (dist.get(t) || 0) + a * this.prob[k]);
      }
    }, this);
    var vocab = this.vocab;
    var out = Array.from(dist, function (e) { return [vocab[e[0]], e[1]]; });
    out.sort(function (x, y) { return y[1] - x[1] || (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0); });
    return { dist: out };
  };

  // --- loading, once per page ---------------------------------------------------------------------

  function loadScript(src) {
    return new Promise(function (resolve, reject) {
      var s = document.createElement("script");
      s.src = src;
      s.onload = resolve;
      s.onerror = function () { reject(new Error("could not load " + src)); };
      document.head.appendChild(s);
    });
  }

  function fetchOk(url) {
    return fetch(url).then(function (r) {
      if (!r.ok) throw new Error("could not fetch " + url + " (HTTP " + r.status + ")");
      return r;
    });
  }

  var runtime = null;
  function loadRuntime() {
    if (runtime) return runtime;
    runtime = (async function () {
      var jobs = [
        window.ort ? Promise.resolve() : loadScript(ORT + "ort.wasm.min.js"),
        window.Plotly ? Promise.resolve() : loadScript(STATIC + "plotly.min.js"),
      ];
      var meta = await fetchOk(LIVE + "toy-gpt.json").then(function (r) { return r.json(); });
      var loaded = await Promise.all([
        fetchOk(LIVE + meta.onnx).then(function (r) { return r.arrayBuffer(); }),
        fetchOk(LIVE + "toy-grammar.json").then(function (r) { return r.json(); }),
      ].concat(jobs));
      var ort = window.ort;
      ort.env.wasm.numThreads = 1; // single-threaded: no cross-origin isolation needed
      ort.env.wasm.proxy = false;
      ort.env.wasm.wasmPaths = ORT;
      var session = await ort.InferenceSession.create(new Uint8Array(loaded[0]), { executionProviders: ["wasm"] });
      return { meta: meta, model: new LiveModel(meta, session), grammar: new ToyGrammar(loaded[1]) };
    })();
    runtime.catch(function () { runtime = null; }); // a failed load may be retried
    return runtime;
  }

  function LiveModel(meta, session) {
    this.meta = meta;
    this.session = session;
    this.index = new Map(meta.vocab.map(function (w, i) { return [w, i]; }));
    this.queue = Promise.resolve();
  }

  // words -> {tokens, logits (Float32Array seq*vocab), attention (layers*heads*seq*seq), seq}
  LiveModel.prototype.run = function (words) {
    var self = this;
    var tokens = [self.meta.eos].concat(words).slice(-self.meta.context_length);
    var ids = tokens.map(function (w) { return self.index.has(w) ? self.index.get(w) : self.meta.special_ids[1]; });
    var job = self.queue.then(async function () {
      var feeds = { ids: new window.ort.Tensor("int64", BigInt64Array.from(ids, BigInt), [1, ids.length]) };
      var out = await self.session.run(feeds);
      return { tokens: tokens, seq: ids.length, logits: out.logits.data, attention: out.attention.data };
    });
    self.queue = job.catch(function () {});
    return job;
  };

  // --- small helpers ------------------------------------------------------------------------------

  var counter = 0;
  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") e.textContent = attrs[k];
      else if (k === "class") e.className = attrs[k];
      else e.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) e.appendChild(c); });
    return e;
  }
  function uid(name) { counter += 1; return "lmlab-live-" + name + "-" + counter; }
  function labelled(labelText, input, hint) {
    var id = uid("input");
    input.id = id;
    var wrap = el("div", { class: "lmlab-live-field" }, [el("label", { for: id, text: labelText }), input]);
    if (hint) {
      var hid = uid("hint");
      wrap.appendChild(el("span", { id: hid, class: "lmlab-live-hint", text: hint }));
      input.setAttribute("aria-describedby", hid);
    }
    return wrap;
  }
  function quote(words) { return "\u201c" + words.join(" ") + "\u201d"; }
  function fmt(p) { return p.toFixed(4); }
  function softmax(xs) {
    var m = -Infinity, i;
    for (i = 0; i < xs.length; i++) if (xs[i] > m) m = xs[i];
    var out = new Float64Array(xs.length), z = 0;
    for (i = 0; i < xs.length; i++) { out[i] = xs[i] === -Infinity ? 0 : Math.exp(xs[i] - m); z += out[i]; }
    for (i = 0; i < xs.length; i++) out[i] /= z;
    return out;
  }

  // lmlab.generate.sampling_distribution: temperature, then top-k, then top-p, then softmax.
  function samplingDistribution(logits, temperature, topK, topP) {
    var V = logits.length, l = new Float64Array(V), i;
    for (i = 0; i < V; i++) l[i] = logits[i] / temperature;
    if (topK && topK < V) {
      var sorted = Array.from(l).sort(function (a, b) { return b - a; });
      var kth = sorted[topK - 1];
      for (i = 0; i < V; i++) if (l[i] < kth) l[i] = -Infinity;
    }
    if (topP < 1) {
      var order = Array.from(l.keys()).sort(function (a, b) { return l[b] - l[a]; });
      var probs = softmax(order.map(function (j) { return l[j]; }));
      var before = 0;
      order.forEach(function (j, r) { if (before >= topP) l[j] = -Infinity; before += probs[r]; });
    }
    return softmax(l);
  }

  // Split what was typed into finished words and a word still being typed (a prefix of some words).
  function parseInput(text, vocabSet, vocab) {
    var words = text.trim().length ? text.trim().split(/\s+/) : [];
    var partial = "";
    if (words.length && !/\s$/.test(text) && !vocabSet.has(words[words.length - 1])) {
      var last = words[words.length - 1];
      if (vocab.some(function (w) { return w.indexOf(last) === 0; })) partial = words.pop();
    }
    return { words: words, partial: partial };
  }

  // --- a panel ------------------------------------------------------------------------------------

  var TITLES = {
    attention: "Live: type a sentence, watch toy-gpt's attention",
    generation: "Live: toy-gpt's next word against the exact truth",
  };

  function Panel(root) {
    this.root = root;
    this.kind = root.dataset.panel === "generation" ? "generation" : "attention";
    this.answers = 0;
    this.eventTime = null;
    this.busy = false;
    this.pending = false;
    root.innerHTML = "";
    root.classList.add("lmlab-live-panel");
    root.setAttribute("role", "region");
    var titleId = uid("title");
    root.setAttribute("aria-labelledby", titleId);
    root.appendChild(el("p", { id: titleId, class: "lmlab-live-title", text: TITLES[this.kind] }));
    if (location.protocol === "file:") {
      root.dataset.state = "file";
      root.appendChild(el("p", { class: "lmlab-live-status", role: "status", text: SERVE_HINT }));
      return;
    }
    root.dataset.state = "idle";
    this.startButton = el("button", { type: "button", class: "lmlab-live-start",
      text: "Start the live model" });
    this.status = el("p", { class: "lmlab-live-status", role: "status", "aria-live": "polite",
      text: "Runs toy-gpt in this page (about 16 MB, loaded once when you press start; nothing is sent anywhere)." });
    root.appendChild(el("div", { class: "lmlab-live-row" }, [this.startButton]));
    root.appendChild(this.status);
    this.startButton.addEventListener("click", this.start.bind(this));
  }

  Panel.prototype.start = async function () {
    var t0 = performance.now();
    this.startButton.disabled = true;
    this.root.dataset.state = "loading";
    this.status.textContent = "Loading toy-gpt and the toy language into the page\u2026";
    try {
      this.rt = await loadRuntime();
    } catch (err) {
      this.root.dataset.state = "error";
      this.startButton.disabled = false;
      this.status.textContent = "The live model could not be loaded (" + err.message + "). " +
        (location.protocol === "file:" ? SERVE_HINT : "Reload the page to try again.");
      return;
    }
    this.startButton.parentNode.remove();
    this.build();
    this.eventTime = t0;
    await this.refresh();
    var ms = performance.now() - t0;
    this.root.dataset.firstAnswerMs = ms.toFixed(1);
    this.root.dataset.state = "ready";
    this.status.textContent = "toy-gpt runs in this page (ready in " + (ms / 1000).toFixed(1) + " s). " +
      (this.kind === "attention" ? "Type or pick words; choose a layer and a head." :
        "Type or pick words; change temperature, top-k and top-p; sample a continuation.");
  };

  Panel.prototype.build = function () {
    var self = this, rt = this.rt;
    this.vocab = rt.grammar.vocab;
    this.vocabSet = new Set(this.vocab);
    var listId = uid("words");
    this.datalist = el("datalist", { id: listId });
    this.input = el("input", { type: "text", list: listId, autocomplete: "off", spellcheck: "false",
      autocapitalize: "off", class: "lmlab-live-sentence" });
    this.input.value = this.root.dataset.sentence ||
      (this.kind === "attention" ? "the dogs that the boy feeds" : "the girl");
    var controls = el("div", { class: "lmlab-live-controls" });
    controls.appendChild(labelled("Sentence (words of the toy language)", this.input,
      "The completion list offers the toy language's words; the model sees \".\" before the first word."));
    controls.appendChild(this.datalist);
    this.picks = el("div", { class: "lmlab-live-picks", role: "group", "aria-label": "Words the toy language allows next" });
    var back = el("button", { type: "button", text: "Remove the last word" });
    back.addEventListener("click", function () {
      var w = self.input.value.trim().split(/\s+/).filter(Boolean);
      w.pop();
      self.setSentence(w.join(" ") + (w.length ? " " : ""));
    });
    var opts = el("div", { class: "lmlab-live-row" });
    if (this.kind === "attention") {
      this.layer = el("select");
      this.head = el("select");
      for (var l = 0; l < rt.meta.n_layer; l++) this.layer.appendChild(el("option", { value: l, text: "layer " + l }));
      for (var h = 0; h < rt.meta.n_head; h++) this.head.appendChild(el("option", { value: h, text: "head " + h }));
      this.layer.value = this.root.dataset.layer || String(rt.meta.n_layer - 1);
      this.head.value = this.root.dataset.head || "0";
      opts.appendChild(labelled("Layer", this.layer));
      opts.appendChild(labelled("Head", this.head));
      [this.layer, this.head].forEach(function (s) { s.addEventListener("change", function () { self.update(); }); });
    } else {
      this.temperature = el("input", { type: "range", min: "0.1", max: "3", step: "0.05", value: "1" });
      this.topK = el("input", { type: "number", min: "0", max: String(rt.meta.vocab.length), step: "1", value: "0" });
      this.topP = el("input", { type: "range", min: "0.05", max: "1", step: "0.01", value: "1" });
      this.tOut = el("output", { text: "1.00" });
      this.pOut = el("output", { text: "1.00" });
      var tField = labelled("Temperature", this.temperature);
      tField.appendChild(this.tOut);
      var pField = labelled("Top-p (1: keep all)", this.topP);
      pField.appendChild(this.pOut);
      opts.appendChild(tField);
      opts.appendChild(labelled("Top-k (0: keep all)", this.topK));
      opts.appendChild(pField);
      [this.temperature, this.topK, this.topP].forEach(function (c) {
        c.addEventListener("input", function () { self.update(); });
      });
      var one = el("button", { type: "button", text: "Sample the next word" });
      var all = el("button", { type: "button", text: "Sample to the end of the sentence" });
      one.addEventListener("click", function () { self.sample(1); });
      all.addEventListener("click", function () { self.sample(20); });
      this.sampleButtons = [one, all];
      this.sampleLog = el("p", { class: "lmlab-live-note", "aria-live": "polite" });
    }
    controls.appendChild(opts);
    controls.appendChild(el("div", { class: "lmlab-live-row" }, [back].concat(this.sampleButtons || [])));
    controls.appendChild(el("p", { class: "lmlab-live-hint", text: "Words the toy language allows next (press one to add it):" }));
    controls.appendChild(this.picks);
    this.root.appendChild(controls);
    this.verdict = el("p", { class: "lmlab-live-verdict", role: "status", "aria-live": "polite" });
    this.root.appendChild(this.verdict);
    if (this.sampleLog) this.root.appendChild(this.sampleLog);
    this.figures = [];
    var n = this.kind === "attention" ? 2 : 1;
    var row = el("div", { class: "lmlab-live-figures lmlab-live-figures-" + n });
    for (var i = 0; i < n; i++) {
      var gd = el("div", { class: "lmlab-live-plot plotly-graph-div" });
      var fig = el("div", { class: "lmlab-live-figure", role: "figure", "aria-label": "" }, [gd]);
      row.appendChild(fig);
      this.figures.push(gd);
    }
    this.root.appendChild(row);
    this.table = el("table", { class: "lmlab-live-table" });
    var details = el("details", { class: "lmlab-live-numbers" }, [
      el("summary", { text: this.kind === "attention" ? "The weights as numbers" : "The probabilities as numbers" }),
      this.table]);
    this.root.appendChild(details);
    this.input.addEventListener("input", function () { self.update(); });
    this.input.addEventListener("keydown", function (e) {
      if (e.key === "Enter") { e.preventDefault(); self.update(); }
    });
  };

  Panel.prototype.setSentence = function (text) {
    this.input.value = text;
    this.update();
  };

  Panel.prototype.update = function () {
    this.eventTime = performance.now();
    this.refresh();
  };

  // Redraw for the current input; calls that arrive while drawing are merged into one more redraw.
  Panel.prototype.refresh = async function () {
    if (this.busy) { this.pending = true; return this.done; }
    var self = this, finish;
    this.busy = true;
    this.root.dataset.busy = "1"; // until every input so far is answered
    this.done = new Promise(function (r) { finish = r; });
    try {
      do {
        this.pending = false;
        var t0 = this.eventTime;
        await this.render();
        this.answers += 1;
        this.root.dataset.answers = String(this.answers);
        if (t0 !== null) this.root.dataset.latencyMs = (performance.now() - t0).toFixed(1);
      } while (this.pending);
    } catch (err) {
      this.verdict.textContent = "Something went wrong in the live panel: " + err.message;
      this.root.dataset.error = err.message;
    } finally {
      this.busy = false;
      this.root.dataset.busy = "0";
      finish();
    }
    return self.done;
  };

  Panel.prototype.render = async function () {
    var rt = this.rt;
    var parsed = parseInput(this.input.value, this.vocabSet, this.vocab);
    var words = parsed.words;
    var truth = rt.grammar.nextDistribution(words);
    this.updateCompletions(parsed, truth);
    var message = "";
    this.root.dataset.grammar = truth.dist ? "ok" : truth.unknown ? "unknown" : "impossible";
    if (truth.unknown) {
      message = "\u201c" + truth.unknown.word + "\u201d is not a word of the toy language: pick one from the " +
        "completion list. The model is shown the words before it.";
      words = words.slice(0, truth.unknown.index);
      truth = rt.grammar.nextDistribution(words);
    }
    if (truth.impossible) {
      var im = truth.impossible;
      message = "The toy language cannot continue this: \u201c" + im.word + "\u201d (word " + (im.index + 1) +
        ") is impossible " + (im.before.length ? "after " + quote(im.before) : "at the start of a sentence") +
        ", so there is no exact next word. toy-gpt still answers: see what it makes of it.";
    }
    var out = await rt.model.run(words);
    if (this.kind === "attention") this.drawAttention(out, words, truth, message);
    else await this.drawGeneration(out, words, truth, message);
    if (this.kind === "attention") await this.plotAttention(out);
  };

  Panel.prototype.updateCompletions = function (parsed, truth) {
    var self = this;
    var allowed = truth.dist ? truth.dist.map(function (e) { return e[0]; }) : [];
    var partial = parsed.partial;
    var base = parsed.words.join(" ");
    var pool = allowed.concat(this.vocab.filter(function (w) { return allowed.indexOf(w) < 0; }));
    var matches = pool.filter(function (w) { return w.indexOf(partial) === 0; }).slice(0, 40);
    this.datalist.innerHTML = "";
    matches.forEach(function (w) {
      self.datalist.appendChild(el("option", { value: (base ? base + " " : "") + w }));
    });
    this.picks.innerHTML = "";
    allowed.slice(0, 12).forEach(function (w) {
      var b = el("button", { type: "button", class: "lmlab-live-pick", text: w });
      b.addEventListener("click", function () { self.setSentence((base ? base + " " : "") + w + " "); });
      self.picks.appendChild(b);
    });
    if (!allowed.length) this.picks.appendChild(el("span", { class: "lmlab-live-hint", text: "(none)" }));
  };

  // --- the attention panel --------------------------------------------------------------------------

  Panel.prototype.pattern = function (out) {
    var H = this.rt.meta.n_head, T = out.seq;
    var l = Number(this.layer.value), h = Number(this.head.value);
    var base = (l * H + h) * T * T, rows = [];
    for (var i = 0; i < T; i++) rows.push(Array.from(out.attention.subarray(base + i * T, base + i * T + T)));
    return rows;
  };

  Panel.prototype.drawAttention = function (out, words, truth, message) {
    var rows = this.pattern(out), T = out.seq, toks = out.tokens;
    var last = rows[T - 1], best = 0;
    for (var j = 1; j < T; j++) if (last[j] > last[best]) best = j;
    var l = this.layer.value, h = this.head.value;
    var probs = softmax(out.logits.subarray((T - 1) * this.rt.meta.vocab.length, T * this.rt.meta.vocab.length));
    var top = 0;
    for (var v = 0; v < probs.length; v++) if (probs[v] > probs[top]) top = v;
    var lines = [];
    if (message) lines.push(message);
    lines.push("Layer " + l + ", head " + h + ": the last word, \u201c" + toks[T - 1] + "\u201d, attends most to \u201c" +
      toks[best] + "\u201d (position " + best + ", weight " + last[best].toFixed(2) + ").");
    var next = "toy-gpt's most likely next word: \u201c" + this.rt.meta.vocab[top] + "\u201d (p = " + probs[top].toFixed(2) + ")";
    if (truth.dist) next += "; the toy language's: \u201c" + truth.dist[0][0] + "\u201d (p = " + truth.dist[0][1].toFixed(2) + ").";
    lines.push(next);
    this.verdict.textContent = lines.join(" ");
    // the numbers: rows are queries, columns keys
    var t = this.table;
    t.innerHTML = "";
    t.appendChild(el("caption", { text: "Layer " + l + ", head " + h + ": row = the word attending (query), column = the word attended to (key)" }));
    var head = el("tr", {}, [el("th", { scope: "col", text: "query \\ key" })]);
    toks.forEach(function (w, k) { head.appendChild(el("th", { scope: "col", text: k + " " + w })); });
    t.appendChild(el("thead", {}, [head]));
    var body = el("tbody");
    rows.forEach(function (r, i) {
      var tr = el("tr", {}, [el("th", { scope: "row", text: i + " " + toks[i] })]);
      r.forEach(function (x, k) { tr.appendChild(el("td", { text: k <= i ? fmt(x) : "" })); });
      body.appendChild(tr);
    });
    t.appendChild(body);
    this.figures[0].parentNode.setAttribute("aria-label", "Heatmap of the attention weights of layer " + l + ", head " + h +
      " over " + quote(toks) + ": row = query, column = key. " + this.verdict.textContent);
    this.figures[1].parentNode.setAttribute("aria-label", "Lines from each word (left) to the words it attends to (right), " +
      "thicker for larger weights, layer " + l + ", head " + h + ".");
  };

  Panel.prototype.layout = function (extra) {
    var base = { template: { layout: this.rt.meta.template }, autosize: true, margin: { l: 70, r: 20, t: 50, b: 60 } };
    return Object.assign(base, extra);
  };

  Panel.prototype.plotAttention = async function (out) {
    var rows = this.pattern(out), T = out.seq, toks = out.tokens;
    var l = this.layer.value, h = this.head.value;
    var idx = Array.from(Array(T).keys());
    var labels = toks.map(function (w, i) { return i + " " + w; });
    var z = rows.map(function (r, i) { return r.map(function (x, j) { return j <= i ? x : null; }); });
    var custom = rows.map(function (r, i) { return r.map(function (x, j) { return [toks[i], toks[j]]; }); });
    var height = Math.max(320, 120 + 18 * T);
    var heat = [{ type: "heatmap", z: z, x: idx, y: idx, zmin: 0, zmax: 1, colorscale: "Viridis", customdata: custom,
      hovertemplate: "query <b>%{customdata[0]}</b><br>key <b>%{customdata[1]}</b><br>weight %{z:.3f}<extra></extra>",
      colorbar: { title: { text: "weight" }, thickness: 12 } }];
    var heatLayout = this.layout({ height: height, title: { text: "Layer " + l + ", head " + h },
      xaxis: { title: { text: "attended to (key)" }, tickvals: idx, ticktext: labels, tickangle: -60, showgrid: false },
      yaxis: { title: { text: "attending (query)" }, tickvals: idx, ticktext: labels, autorange: "reversed", showgrid: false } });
    var shapes = [];
    rows.forEach(function (r, i) {
      r.forEach(function (x, j) {
        if (j <= i && x >= 0.02) {
          shapes.push({ type: "line", x0: 0.12, y0: i, x1: 0.88, y1: j, layer: "below",
            line: { color: "#0072B2", width: 0.5 + 6 * x }, opacity: Math.min(1, 0.15 + x) });
        }
      });
    });
    var text = [
      { type: "scatter", mode: "text", x: idx.map(function () { return 0.1; }), y: idx, text: toks, textposition: "middle left",
        hovertemplate: "query %{y}: <b>%{text}</b><extra></extra>", textfont: { size: 13 } },
      { type: "scatter", mode: "text", x: idx.map(function () { return 0.9; }), y: idx, text: toks, textposition: "middle right",
        hovertemplate: "key %{y}: <b>%{text}</b><extra></extra>", textfont: { size: 13 } },
    ];
    var lineLayout = this.layout({ height: height, showlegend: false, shapes: shapes, title: { text: "Who attends to whom" },
      xaxis: { range: [-0.45, 1.45], visible: false, fixedrange: true },
      yaxis: { range: [T - 0.5, -0.5], visible: false, fixedrange: true }, margin: { l: 10, r: 10, t: 50, b: 20 } });
    var config = { displaylogo: false, responsive: true };
    await Promise.all([window.Plotly.react(this.figures[0], heat, heatLayout, config),
      window.Plotly.react(this.figures[1], text, lineLayout, config)]);
  };

  // --- the generation panel -------------------------------------------------------------------------

  Panel.prototype.settings = function () {
    var t = Number(this.temperature.value), k = Math.floor(Number(this.topK.value) || 0), p = Number(this.topP.value);
    this.tOut.textContent = t.toFixed(2);
    this.pOut.textContent = p.toFixed(2);
    return { temperature: t, topK: Math.max(0, k), topP: p };
  };

  Panel.prototype.distributions = function (out) {
    var V = this.rt.meta.vocab.length, T = out.seq;
    var logits = out.logits.subarray((T - 1) * V, T * V);
    var s = this.settings();
    return { raw: softmax(logits), sampling: samplingDistribution(logits, s.temperature, s.topK, s.topP), settings: s };
  };

  Panel.prototype.drawGeneration = async function (out, words, truth, message) {
    var meta = this.rt.meta, vocab = meta.vocab, index = this.rt.model.index;
    var d = this.distributions(out);
    this.current = { words: words, dist: d, truth: truth };
    var exact = new Map(truth.dist || []);
    var order = Array.from(d.sampling.keys()).sort(function (a, b) { return d.sampling[b] - d.sampling[a]; });
    var shown = [];
    order.slice(0, 10).forEach(function (i) { if (d.sampling[i] > 0) shown.push(vocab[i]); });
    (truth.dist || []).slice(0, 10).forEach(function (e) { if (shown.indexOf(e[0]) < 0) shown.push(e[0]); });
    shown.sort(function (a, b) {
      var ka = Math.max(exact.get(a) || 0, d.sampling[index.get(a)] || 0), kb = Math.max(exact.get(b) || 0, d.sampling[index.get(b)] || 0);
      return kb - ka;
    });
    var modelP = shown.map(function (w) { return index.has(w) ? d.sampling[index.get(w)] : 0; });
    var exactP = shown.map(function (w) { return exact.get(w) || 0; });
    var context = words.length ? quote(words.slice(-6)) : "the start of a sentence";
    var s = d.settings;
    var lines = [];
    if (message) lines.push(message);
    var topW = vocab[order[0]];
    lines.push("After " + context + ", toy-gpt (temperature " + s.temperature.toFixed(2) +
      (s.topK ? ", top-k " + s.topK : "") + (s.topP < 1 ? ", top-p " + s.topP.toFixed(2) : "") + ") most likely says \u201c" +
      topW + "\u201d (p = " + d.sampling[order[0]].toFixed(2) + ")" +
      (truth.dist ? "; the toy language says \u201c" + truth.dist[0][0] + "\u201d with p = " + truth.dist[0][1].toFixed(2) +
        ", and gives \u201c" + topW + "\u201d p = " + (exact.get(topW) || 0).toFixed(2) + "." : "."));
    if (truth.dist) {
      var tv = 0, seen = new Set();
      vocab.forEach(function (w, i) { tv += Math.abs(d.raw[i] - (exact.get(w) || 0)); seen.add(w); });
      exact.forEach(function (p, w) { if (!seen.has(w)) tv += p; });
      lines.push("Total variation between toy-gpt (temperature 1, no filtering) and the truth here: " + (tv / 2).toFixed(3) + ".");
    }
    this.verdict.textContent = lines.join(" ");
    var t = this.table;
    t.innerHTML = "";
    t.appendChild(el("caption", { text: "Next word after " + context + ": probabilities" }));
    t.appendChild(el("thead", {}, [el("tr", {}, ["word", "toy-gpt", "toy-gpt after the controls", "exact"].map(function (x) {
      return el("th", { scope: "col", text: x });
    }))]));
    var body = el("tbody");
    shown.forEach(function (w, r) {
      body.appendChild(el("tr", {}, [el("th", { scope: "row", text: w }),
        el("td", { text: fmt(index.has(w) ? d.raw[index.get(w)] : 0) }), el("td", { text: fmt(modelP[r]) }),
        el("td", { text: fmt(exactP[r]) })]));
    });
    t.appendChild(body);
    var colors = meta.colors;
    var data = [
      { type: "bar", name: "toy-gpt", x: shown, y: modelP, marker: { color: colors.model },
        hovertemplate: "<b>%{x}</b><br>toy-gpt: p = %{y:.3f}<extra></extra>" },
      { type: "bar", name: "exact (toy language)", x: shown, y: exactP, marker: { color: colors.exact },
        hovertemplate: "<b>%{x}</b><br>exact: p = %{y:.3f}<extra></extra>" },
    ];
    var layout = this.layout({ height: 400, barmode: "group", title: { text: "Next word after " + context },
      yaxis: { title: { text: "probability" }, range: [0, 1] }, xaxis: { tickangle: -40 },
      legend: { orientation: "h", x: 1, xanchor: "right", y: 1.02, yanchor: "bottom" } });
    this.figures[0].parentNode.setAttribute("aria-label", "Bars of the next word's probability after " + context +
      ": toy-gpt and the toy language's exact distribution. " + this.verdict.textContent);
    await window.Plotly.react(this.figures[0], data, layout, { displaylogo: false, responsive: true });
  };

  Panel.prototype.sample = async function (maxWords) {
    var self = this;
    this.sampleButtons.forEach(function (b) { b.disabled = true; });
    try {
      for (var n = 0; n < maxWords; n++) {
        await this.refresh();
        var cur = this.current;
        if (!cur) break;
        var special = new Set(this.rt.meta.special_ids);
        var probs = cur.dist.sampling, total = 0, i;
        for (i = 0; i < probs.length; i++) if (!special.has(i)) total += probs[i];
        var u = Math.random() * total, pick = -1;
        for (i = 0; i < probs.length; i++) {
          if (special.has(i) || probs[i] === 0) continue;
          pick = i;
          u -= probs[i];
          if (u < 0) break;
        }
        var word = this.rt.meta.vocab[pick];
        var exact = cur.truth.dist ? new Map(cur.truth.dist).get(word) || 0 : null;
        this.sampleLog.textContent = "Sampled \u201c" + word + "\u201d (p = " + probs[pick].toFixed(3) + " after the controls" +
          (exact === null ? ")." : exact > 0 ? "; exact p = " + exact.toFixed(3) + ")." :
            "; the toy language never says this here: exact p = 0).");
        var w = cur.words.concat([word]);
        this.input.value = w.join(" ") + " ";
        this.eventTime = performance.now();
        await this.refresh();
        if (word === this.rt.meta.eos) break;
        if (maxWords > 1) await new Promise(function (r) { setTimeout(r, 120); });
      }
    } finally {
      self.sampleButtons.forEach(function (b) { b.disabled = false; });
    }
  };

  // --- start-up -------------------------------------------------------------------------------------

  function init() {
    document.querySelectorAll(".lmlab-live").forEach(function (root) {
      if (!root.lmlabPanel) root.lmlabPanel = new Panel(root);
    });
  }
  window.lmlabLive = { ToyGrammar: ToyGrammar, samplingDistribution: samplingDistribution, init: init, loadRuntime: loadRuntime };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
