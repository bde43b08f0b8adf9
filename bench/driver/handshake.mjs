// Full signaling handshakes: two fresh clients connect and sign in, then
// StartConnection (our protocol only; PeerJS has none), Offer, Answer, four
// ICE candidates each way, and both close. `workers` handshakes run at once.
import { Client } from "./client.mjs";
import { markerOf } from "./protocols.mjs";
import { CpuMeter, emit, sleep, summarize } from "./stats.mjs";

const STEP_TIMEOUT_MS = 10000;

/** Resolve when a client receives its next frame, if it is of `kind`. */
function nextFrame(protocol, client, kind) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${kind} frame`)), STEP_TIMEOUT_MS);
    client.onFrame = (text) => {
      clearTimeout(timer);
      client.onFrame = null;
      if (protocol.kindOf(text) === kind) resolve(text);
      else reject(new Error(`expected ${kind}, got ${text.slice(0, 120)}`));
    };
  });
}

/** Resolve after a client received `n` frames with a marker. */
function frames(client, n) {
  return new Promise((resolve, reject) => {
    let seen = 0;
    const timer = setTimeout(() => reject(new Error(`got ${seen} of ${n} frames`)), STEP_TIMEOUT_MS);
    client.onFrame = (text) => {
      if (markerOf(text) === null) return;
      if (++seen === n) {
        clearTimeout(timer);
        client.onFrame = null;
        resolve();
      }
    };
  });
}

function frame(protocol, kind, target, marker) {
  const [head, tail] = protocol.template(kind, target);
  return kind === "start" ? head : head + "~" + marker + "~" + tail;
}

async function oneHandshake(protocol, server, sources, aId, bId) {
  const a = new Client(protocol, server, aId, { sources, timeoutMs: STEP_TIMEOUT_MS });
  const b = new Client(protocol, server, bId, { sources, timeoutMs: STEP_TIMEOUT_MS });
  try {
    await Promise.all([a.ready, b.ready]);
    if (protocol.hasStart) {
      const started = nextFrame(protocol, b, "start");
      a.send(frame(protocol, "start", bId));
      await started;
    }
    const offered = nextFrame(protocol, a, "offer");
    b.send(frame(protocol, "offer", aId, "o"));
    await offered;
    const answered = nextFrame(protocol, b, "answer");
    a.send(frame(protocol, "answer", bId, "a"));
    await answered;
    const aGot = frames(a, 4);
    const bGot = frames(b, 4);
    for (let i = 0; i < 4; i++) {
      a.send(frame(protocol, "ice", bId, `c${i}`));
      b.send(frame(protocol, "ice", aId, `c${i}`));
    }
    await Promise.all([aGot, bGot]);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
}

export async function handshake(protocol, config) {
  const { server, workers, warmupMs, durationMs, prefix, sources } = config;
  let measuring = false;
  let stopping = false;
  let completed = 0;
  let failed = 0;
  let lastError = null;
  const durations = [];

  async function worker(w) {
    for (let i = 0; !stopping; i++) {
      const begun = performance.now();
      try {
        await oneHandshake(protocol, server, sources, `${prefix}${w}x${i}a`, `${prefix}${w}x${i}b`);
        // Completions inside the window count, whenever they began.
        if (measuring) {
          completed++;
          durations.push(performance.now() - begun);
        }
      } catch (error) {
        failed++;
        lastError = error.message;
      }
    }
  }

  const running = Promise.all(Array.from({ length: workers }, (_, w) => worker(w)));
  await sleep(warmupMs);
  measuring = true;
  const cpu = new CpuMeter();
  const started = performance.now();
  emit("measure_start");
  await sleep(durationMs);
  measuring = false;
  const seconds = (performance.now() - started) / 1000;
  const driverCpu = cpu.fraction();
  emit("measure_end");
  stopping = true;
  await running;
  return {
    completed,
    failed,
    last_error: lastError,
    seconds: Math.round(seconds * 1000) / 1000,
    handshakes_per_s: Math.round((completed / seconds) * 10) / 10,
    duration: summarize(durations),
    driver_cpu: driverCpu,
  };
}
