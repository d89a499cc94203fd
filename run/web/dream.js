// The dream in the browser: M's step, V's decoder and C run as ONNX graphs in onnxruntime-web (WebAssembly, one
// thread); the mixture is sampled here, as rnn/model.py's sample_mixture_from_noise defines it. Written next to
// model.json, check.json and the graphs by `python -m run.export_web`, for Doom or CarRacing (model.json's env).
//
// A step, as envs/dream.py's dream_step: V draws z_t; C acts on (z_t, h_t, c_t), or the held arrow keys do;
// M reads (z_t, a_t, restart_t) and gives (h, c) and the mixture of z_{t+1}, plus the done logit where M has one
// (Doom's death; CarRacing's end of the episode, for an M trained with --predict_done) and the step's reward where
// M predicts one (CarRacing: the dream's return is their sum); z_{t+1} is drawn at temperature tau; the dream ends
// when the done logit passes 0 (p > 0.5) or at the step cap, and a new one starts from a real first frame.
//
// URL options: ?seed=N (the dream's random numbers), ?fps=N (steps a second; 0: as fast as it goes), ?check
// (run the check against Keras on load). window.worldModel is the page's API (used by the tests).
"use strict";

(() => {
  const MIN_TEMPERATURE = 1e-6; // rnn/model.py: tau = 0 picks the likeliest component's mean
  // The arrow keys each task reads. Doom: left -1, right +1 (both: stay). CarRacing: while any is held the keys
  // set the whole action, left/right steer -1/+1, up gas 1, down brake 0.8 (gymnasium's CarRacing keyboard demo).
  const KEYS = { doom: ["ArrowLeft", "ArrowRight"], carracing: ["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown"] };
  const CARRACING_BRAKE = 0.8;
  const TEXT = {
    doom: { steps: "steps survived", record: "last dream / best", end: "p(death)",
            lead: "Hold ← or → to take over",
            help: "← →: move (overrides C while held) · R: restart · the slider: τ" },
    carracing: { steps: "steps", record: "last / best return", end: "p(end)",
                 lead: "Hold the arrow keys to take over (← → steer, ↑ gas, ↓ brake)",
                 help: "← →: steer, ↑: gas, ↓: brake (the keys drive while one is held) · R: restart · " +
                       "the slider: τ" },
  };
  const query = new URLSearchParams(location.search);
  const $ = (id) => document.getElementById(id);

  // ---- random numbers: a seeded generator, so ?seed=N replays a dream ----

  function mulberry32(seed) {
    let a = seed >>> 0;
    return () => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  function randomSource(seed) {
    const next = mulberry32(seed);
    return {
      uniform: () => 1e-20 + next() * (1 - 1e-20), // in (0, 1), as TF's stateless_uniform(minval=1e-20)
      normal: () => Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next()), // Box-Muller
    };
  }

  // ---- the project's sampling: component by Gumbel-max over logits / tau, then mu + sigma sqrt(tau) normal ----

  function sampleMixture(logits, mu, logSigma, temperature, uniform, normal, numMixtures) {
    const tau = Math.max(temperature, MIN_TEMPERATURE);
    const scale = Math.sqrt(tau);
    const z = new Float32Array(normal.length);
    for (let i = 0; i < z.length; i++) {
      let best = -Infinity;
      let chosen = 0;
      for (let k = 0; k < numMixtures; k++) {
        const j = i * numMixtures + k;
        const score = logits[j] / tau - Math.log(-Math.log(uniform[j]));
        if (score > best) {
          best = score;
          chosen = k;
        }
      }
      const j = i * numMixtures + chosen;
      z[i] = mu[j] + Math.exp(logSigma[j]) * scale * normal[i];
    }
    return z;
  }

  // ---- the graphs ----

  function tensor(values, size) {
    return new ort.Tensor("float32", Float32Array.from(values), [1, size]);
  }

  async function run(session, feeds) {
    const inputs = {};
    for (const name of session.inputNames) inputs[name] = feeds[name]; // a graph may drop inputs it ignores
    const results = await session.run(inputs);
    const out = {};
    for (const name of session.outputNames) out[name] = results[name].data;
    return out;
  }

  class WorldModel {
    constructor(config, sessions) {
      this.config = config;
      this.sessions = sessions;
      this.z = config.z_size;
      this.hidden = config.hidden_size;
    }

    async act(z, h, c) {
      if (!this.sessions.controller) return Float32Array.from(this.config.driver.action);
      const out = await run(this.sessions.controller, {
        z: tensor(z, this.z), h: tensor(h, this.hidden), c: tensor(c, this.hidden) });
      return Float32Array.from(out.action);
    }

    async step(z, action, h, c, restart) {
      const out = await run(this.sessions.rnn_step, {
        z: tensor(z, this.z), action: tensor(action, this.config.action_size),
        h: tensor(h, this.hidden), c: tensor(c, this.hidden),
        restart: new ort.Tensor("float32", Float32Array.of(restart), [1]) });
      return {
        h: Float32Array.from(out.h_next), c: Float32Array.from(out.c_next), logits: out.logits, mu: out.mu,
        log_sigma: out.log_sigma,
        done_logit: out.done_logit ? out.done_logit[0] : null, // null: M has no done output
        reward: out.reward ? out.reward[0] : null }; // null: M predicts no reward (Doom: +1 a step survived)
    }

    sample(out, temperature, uniform, normal) {
      return sampleMixture(out.logits, out.mu, out.log_sigma, temperature, uniform, normal,
                           this.config.num_mixtures);
    }

    async decode(z) {
      return (await run(this.sessions.decoder, { z: tensor(z, this.z) })).frame;
    }
  }

  // ---- one dream at a time, stepped by a timer ----

  const page = {
    model: null,
    random: null,
    dream: null, // {z, h, c, steps, return, rewards}
    temperature: 1.15,
    held: new Set(),
    totalSteps: 0,
    dreams: 0,
    best: null, // the best finished dream's score: Doom its steps, CarRacing its return
    lastScore: null,
    last: null,
    lastRewards: [], // M's rewards in the dream `last` belongs to
    running: false,
    fps: 0,
    loops: 0,
    error: null,
    queue: Promise.resolve(),
    rate: { count: 0, since: performance.now() },
  };

  // The sessions run one call at a time: the loop, a restart and the check take turns.
  function exclusive(task) {
    const result = page.queue.then(task);
    page.queue = result.catch(() => {});
    return result;
  }

  function newDream() {
    const { mu, logvar } = page.model.config.start_frames;
    const index = Math.min(mu.length - 1, Math.floor(page.random.uniform() * mu.length));
    const z = new Float32Array(page.model.z);
    for (let i = 0; i < z.length; i++) z[i] = mu[index][i] + Math.exp(logvar[index][i] / 2) * page.random.normal();
    page.dream = { z, h: new Float32Array(page.model.hidden), c: new Float32Array(page.model.hidden), steps: 0,
                   return: 0, rewards: [] };
    page.dreams += 1;
  }

  function keyAction() {
    const env = page.model.config.env;
    const held = (key) => page.held.has(key);
    if (!KEYS[env].some(held)) return null;
    const steer = (held("ArrowRight") ? 1 : 0) - (held("ArrowLeft") ? 1 : 0); // both: 0
    if (env === "doom") return Float32Array.of(steer);
    return Float32Array.of(steer, held("ArrowUp") ? 1 : 0, held("ArrowDown") ? CARRACING_BRAKE : 0);
  }

  function draw(frame) {
    const canvas = $("frame");
    const context = canvas.getContext("2d");
    const image = context.createImageData(64, 64);
    for (let p = 0; p < 64 * 64; p++) {
      for (let channel = 0; channel < 3; channel++) {
        image.data[4 * p + channel] = Math.round(Math.min(1, Math.max(0, frame[3 * p + channel])) * 255);
      }
      image.data[4 * p + 3] = 255;
    }
    context.putImageData(image, 0, 0);
  }

  async function stepDream() {
    const started = performance.now();
    const model = page.model;
    const dream = page.dream;
    const config = model.config;
    draw(await model.decode(dream.z));
    const agent = await model.act(dream.z, dream.h, dream.c);
    const keys = keyAction();
    const action = keys || agent;
    const source = keys ? "you" : config.driver.kind === "controller" ? "C" : "none";
    const out = await model.step(dream.z, action, dream.h, dream.c, dream.steps === 0 ? 1 : 0);
    const temperature = page.temperature;
    const sizes = model.z * config.num_mixtures;
    // Float64: a uniform just under 1 would round to 1 in float32 and its Gumbel noise would be infinite.
    const uniform = new Float64Array(sizes).map(() => page.random.uniform());
    const normal = new Float64Array(model.z).map(() => page.random.normal());
    const zNext = model.sample(out, temperature, uniform, normal);
    dream.steps += 1;
    page.totalSteps += 1;
    page.rate.count += 1;
    if (out.reward !== null) {
      dream.return += out.reward;
      dream.rewards.push(out.reward);
    }
    page.lastRewards = dream.rewards;
    const died = out.done_logit !== null && out.done_logit > 0; // Doom: death; CarRacing: M's end of the episode
    const truncated = !died && dream.steps >= config.max_steps;
    page.last = { step: dream.steps, action: Array.from(action), agentAction: Array.from(agent), source,
                  temperature, pDeath: out.done_logit === null ? null : 1 / (1 + Math.exp(-out.done_logit)),
                  reward: out.reward, return: config.predicts_reward ? dream.return : null, died, truncated,
                  totalSteps: page.totalSteps, milliseconds: performance.now() - started };
    show(page.last);
    if (died || truncated) {
      const score = config.predicts_reward ? dream.return : dream.steps;
      page.lastScore = score;
      page.best = page.best === null ? score : Math.max(page.best, score);
      $("banner").textContent = config.env === "doom"
        ? (died ? `died after ${dream.steps} steps` : `survived all ${dream.steps} steps`)
        : `${died ? "ended after" : "all"} ${dream.steps} steps: return ${dream.return.toFixed(1)}`;
      newDream();
    } else {
      Object.assign(dream, { z: zNext, h: out.h, c: out.c });
      if (dream.steps > 30) $("banner").textContent = "";
    }
  }

  const signed = (value) => `${value >= 0 ? "+" : "−"}${Math.abs(value).toFixed(2)}`;

  function show(last) {
    const config = page.model.config;
    $("steps").textContent = String(last.step);
    const score = (value) => (config.predicts_reward ? value.toFixed(1) : String(value));
    $("record").textContent = page.lastScore === null ? "–" : `${score(page.lastScore)} / ${score(page.best)}`;
    if (last.return !== null) $("return").textContent = last.return.toFixed(2);
    if (last.pDeath !== null) {
      $("death").textContent = last.pDeath.toFixed(2);
      $("death-bar").style.width = `${(100 * last.pDeath).toFixed(1)}%`;
    }
    const a = last.action;
    if (config.env === "doom") {
      const move = a[0] < -1 / 3 ? "← left" : a[0] > 1 / 3 ? "right →" : "stay"; // Doom reads a in thirds
      $("action").textContent = `${signed(a[0])} (${move})`;
    } else {
      const names = config.action_names; // steer in [-1, 1], gas and brake in [0, 1]
      $("action").textContent = a.map((v, i) => `${names[i]} ${i === 0 ? signed(v) : v.toFixed(2)}`).join(", ");
    }
    const source = $("source");
    source.textContent = { you: "you (keys)", C: "C, the agent", none: "nobody (no trained C)" }[last.source];
    source.classList.toggle("you", last.source === "you");
    const now = performance.now();
    if (now - page.rate.since >= 1000) {
      $("rate").textContent = String(Math.round((1000 * page.rate.count) / (now - page.rate.since)));
      $("cost").textContent = last.milliseconds.toFixed(1);
      page.rate = { count: 0, since: now };
    }
  }

  function loop(fps) {
    page.fps = fps;
    const generation = ++page.loops; // a resumed loop's predecessor stops at its next tick
    const interval = fps > 0 ? 1000 / fps : 0;
    let due = performance.now();
    const tick = async () => {
      if (!page.running || generation !== page.loops) return;
      try {
        await exclusive(stepDream);
      } catch (error) {
        fail(error);
        return;
      }
      due = Math.max(due + interval, performance.now() - interval); // catch up at most one step
      setTimeout(tick, Math.max(0, due - performance.now()));
    };
    page.running = true;
    tick();
  }

  function fail(error) {
    page.running = false;
    page.error = String(error && error.message ? error.message : error);
    const status = $("status");
    status.textContent = `error: ${page.error}`;
    status.classList.add("error");
    console.error(error);
  }

  // ---- the check: the browser's C, M step, sampling and decoder against Keras on the same inputs ----

  async function evaluate(inputs) {
    const model = page.model;
    const out = await model.step(inputs.z, inputs.action, inputs.h, inputs.c, inputs.restart);
    const result = {
      h_next: Array.from(out.h), c_next: Array.from(out.c), logits: Array.from(out.logits), mu: Array.from(out.mu),
      log_sigma: Array.from(out.log_sigma),
      z_next: Array.from(model.sample(out, inputs.temperature, inputs.uniform.flat(), inputs.normal)),
      frame: Array.from(await model.decode(inputs.z)),
    };
    if (out.done_logit !== null) result.done_logit = out.done_logit;
    if (out.reward !== null) result.reward = out.reward;
    if (model.sessions.controller) result.controller_action = Array.from(await model.act(inputs.z, inputs.h, inputs.c));
    return result;
  }

  function maxDifference(got, want) {
    const a = [got].flat(Infinity);
    const b = [want].flat(Infinity);
    if (a.length !== b.length) return Infinity;
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
    return worst;
  }

  async function check() {
    const cases = await (await fetch("check.json", { cache: "no-store" })).json();
    const errors = {};
    for (const item of cases.cases) {
      const got = await exclusive(() => evaluate(item.inputs));
      for (const [name, want] of Object.entries(item.outputs)) {
        errors[name] = Math.max(errors[name] || 0, maxDifference(got[name], want));
      }
    }
    const worst = Math.max(...Object.values(errors));
    const passed = worst <= cases.tolerance;
    $("check-result").textContent = `${passed ? "ok" : "FAILED"}: largest |browser - Keras| = ` +
      `${worst.toExponential(1)} over ${cases.cases.length} steps (tolerance ${cases.tolerance})`;
    $("check-result").classList.toggle("error", !passed);
    return { passed, worst, errors, cases: cases.cases.length };
  }

  // ---- the page ----

  async function load() {
    const base = new URL(".", location.href);
    ort.env.wasm.numThreads = 1; // threads need cross-origin isolation, which a plain static server lacks
    ort.env.wasm.wasmPaths = { mjs: new URL("vendor/ort-wasm-simd-threaded.mjs", base).href,
                               wasm: new URL("vendor/ort-wasm-simd-threaded.wasm", base).href };
    const config = await (await fetch("model.json", { cache: "no-store" })).json();
    const options = { executionProviders: ["wasm"], graphOptimizationLevel: "all" };
    const sessions = {};
    for (const [name, file] of Object.entries(config.graphs)) {
      if (file) sessions[name] = await ort.InferenceSession.create(new URL(file, base).href, options);
    }
    return new WorldModel(config, sessions);
  }

  function bindControls() {
    const keys = KEYS[page.model.config.env];
    const slider = $("temperature");
    const setTemperature = () => {
      page.temperature = Number(slider.value);
      $("temperature-value").textContent = page.temperature.toFixed(2);
    };
    slider.addEventListener("input", setTemperature);
    slider.value = String(page.temperature);
    setTemperature();
    const restart = () => exclusive(() => { newDream(); $("banner").textContent = ""; });
    $("restart").addEventListener("click", restart);
    $("check").addEventListener("click", () => check().catch(fail));
    window.addEventListener("keydown", (event) => {
      if (keys.includes(event.key)) {
        event.preventDefault(); // the arrows drive, even when the slider has the focus
        page.held.add(event.key);
      } else if (event.key === "r" || event.key === "R") {
        restart();
      }
    });
    window.addEventListener("keyup", (event) => page.held.delete(event.key));
    window.addEventListener("blur", () => page.held.clear());
  }

  async function start() {
    try {
      page.model = await load();
    } catch (error) {
      fail(error);
      return;
    }
    const config = page.model.config;
    page.temperature = config.temperature;
    page.random = randomSource(query.has("seed") ? Number(query.get("seed")) : (Math.random() * 2 ** 32) >>> 0);
    bindControls();
    const text = TEXT[config.env];
    $("steps-label").textContent = text.steps;
    $("record-label").textContent = text.record;
    $("death-label").textContent = text.end;
    $("lead-keys").textContent = text.lead;
    $("help").textContent = text.help;
    $("death-row").hidden = !config.predicts_death;
    $("return-row").hidden = !config.predicts_reward;
    $("status").textContent = `${config.env} world model of ${config.experiment}: z ${config.z_size}, ` +
      `M ${config.hidden_size} units; driver ${config.driver.description}`;
    newDream();
    loop(query.has("fps") ? Number(query.get("fps")) : config.fps);
    if (query.has("check")) check().catch(fail);
  }

  window.worldModel = {
    ready: null,
    get totalSteps() { return page.totalSteps; },
    get dreams() { return page.dreams; },
    get last() { return page.last; },
    get rewards() { return Array.from(page.lastRewards); }, // M's rewards so far in the dream of `last`
    get temperature() { return page.temperature; },
    get error() { return page.error; },
    get config() { return page.model && page.model.config; },
    evaluate: (inputs) => exclusive(() => evaluate(inputs)),
    check,
    sampleMixture,
    pause: () => { // resolves once the step under way (if any) is done
      page.running = false;
      return exclusive(() => {});
    },
    resume: () => { if (!page.running && page.error === null) loop(page.fps); },
    restart: () => exclusive(newDream),
  };
  window.worldModel.ready = start();
})();
