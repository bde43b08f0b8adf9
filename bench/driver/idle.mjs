// The sign-in storm, then holding the signed-in clients idle.
//
// Up to `window` clients are between "connect" and "acknowledged" at any
// moment; each acknowledgement starts the next client, so the server sets
// the pace. A client whose connection fails retries, as real apps do.
// Afterwards the clients stay connected (answering pings, sending PeerJS
// heartbeats) until the orchestrator writes "close" on stdin.
import readline from "node:readline";
import { Client } from "./client.mjs";
import { CpuMeter, emit, sleep, summarize } from "./stats.mjs";

export async function idle(protocol, config) {
  const { server, count, window, prefix, sources, stormTimeoutMs, maxAttempts = 5 } = config;
  const clients = [];
  const latencies = [];
  let next = 0;
  let failures = 0;
  let gaveUp = 0;
  let lastError = null;
  const cpu = new CpuMeter();
  const started = performance.now();
  const deadline = started + stormTimeoutMs;

  async function signInOne(index) {
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      if (performance.now() > deadline) break;
      const begun = performance.now();
      const client = new Client(protocol, server, `${prefix}${index}`, {
        sources,
        timeoutMs: Math.max(1000, deadline - begun),
      });
      try {
        await client.ready;
        latencies.push(performance.now() - begun);
        clients.push(client);
        return;
      } catch (error) {
        failures++;
        lastError = error.message;
        client.terminate();
        await sleep(50 * attempt);
      }
    }
    gaveUp++;
  }

  async function worker() {
    while (next < count && performance.now() < deadline) await signInOne(next++);
  }
  await Promise.all(Array.from({ length: Math.min(window, count) }, worker));
  const seconds = (performance.now() - started) / 1000;
  emit("ready", {
    requested: count,
    acked: clients.length,
    failed_attempts: failures,
    gave_up: gaveUp,
    last_error: lastError,
    seconds: Math.round(seconds * 1000) / 1000,
    signins_per_s: Math.round(clients.length / seconds),
    complete: clients.length === count,
    latency: summarize(latencies),
    driver_cpu: cpu.fraction(),
  });

  const input = readline.createInterface({ input: process.stdin });
  for await (const line of input) {
    const command = line.trim();
    if (command === "status") {
      emit("status", { open: clients.filter((c) => !c.closed).length, held: clients.length });
    } else if (command === "close") {
      break;
    }
  }
  const dropped = clients.filter((c) => c.closed).length;
  // Close in batches so that the close storm itself stays bounded.
  for (let i = 0; i < clients.length; i += 1000) {
    await Promise.all(clients.slice(i, i + 1000).map((c) => c.close(5000)));
  }
  emit("closed", { dropped_while_idle: dropped });
}
