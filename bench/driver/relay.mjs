// Relay throughput and round trip: pairs of signed-in clients bounce
// SDP-sized and ICE-sized frames through the server, a fixed number in flight.
//
// A sends to B; B answers each frame at once (Offer -> Answer, ICE -> ICE);
// A sends the next when an answer arrives. Every frame the server delivers
// counts as one relayed message; the round trip is two relays.
import { Client } from "./client.mjs";
import { markerOf } from "./protocols.mjs";
import { CpuMeter, emit, sleep, summarize } from "./stats.mjs";

const REPLY = { offer: "answer", answer: "answer", ice: "ice" };

export async function relay(protocol, config) {
  const {
    server,
    serverB = server,
    pairs,
    inflight,
    sdpEvery = 2,
    warmupMs,
    durationMs,
    prefix,
    sources,
  } = config;

  const connecting = [];
  for (let i = 0; i < pairs; i++) {
    connecting.push(new Client(protocol, server, `${prefix}a${i}`, { sources }).ready);
    connecting.push(new Client(protocol, serverB, `${prefix}b${i}`, { sources }).ready);
  }
  const settled = await Promise.allSettled(connecting);
  const clients = settled.filter((s) => s.status === "fulfilled").map((s) => s.value);
  const failed = settled.filter((s) => s.status === "rejected");
  if (failed.length) {
    await Promise.all(clients.map((c) => c.close()));
    return { error: `sign-in failed for ${failed.length} clients: ${failed[0].reason.message}` };
  }

  let measuring = false;
  let stopping = false;
  let delivered = 0;
  let outstanding = 0;
  let protocolError = null;
  const rtts = [];

  const onControl = (text) => {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    const error = protocol.errorOf(message);
    if (error && !protocolError) protocolError = error;
  };

  for (let i = 0; i < pairs; i++) {
    const a = clients[2 * i];
    const b = clients[2 * i + 1];
    const toB = { offer: protocol.template("offer", b.id), ice: protocol.template("ice", b.id) };
    const toA = { answer: protocol.template("answer", a.id), ice: protocol.template("ice", a.id) };
    let sent = 0;
    const sendNext = () => {
      const kind = sdpEvery > 0 && sent % sdpEvery === 0 ? "offer" : "ice";
      sent++;
      const [head, tail] = toB[kind];
      outstanding++;
      a.send(head + "~" + performance.now().toFixed(3) + "~" + tail);
    };
    a.onFrame = (text) => {
      const marker = markerOf(text);
      if (marker === null) return onControl(text);
      outstanding--;
      if (measuring) {
        delivered++;
        rtts.push(performance.now() - Number(marker));
      }
      if (!stopping && !protocolError) sendNext();
    };
    b.onFrame = (text) => {
      const marker = markerOf(text);
      if (marker === null) return onControl(text);
      if (measuring) delivered++;
      const [head, tail] = toA[REPLY[protocol.kindOf(text)] || "ice"];
      b.send(head + "~" + marker + "~" + tail);
    };
    a.sendNext = sendNext;
  }

  for (let i = 0; i < pairs; i++) {
    for (let k = 0; k < inflight; k++) clients[2 * i].sendNext();
  }
  await sleep(warmupMs);
  const cpu = new CpuMeter();
  const started = performance.now();
  measuring = true;
  emit("measure_start");
  await waitOrError(durationMs, () => protocolError);
  measuring = false;
  const seconds = (performance.now() - started) / 1000;
  const driverCpu = cpu.fraction();
  emit("measure_end");
  stopping = true;
  // Let the frames in flight land so that closing does not count as errors.
  for (let waited = 0; outstanding > 0 && waited < 3000; waited += 20) await sleep(20);
  await Promise.all(clients.map((c) => c.close()));

  if (protocolError) return { error: protocolError };
  return {
    online_clients: pairs * 2,
    delivered,
    seconds: round3(seconds),
    msgs_per_s: Math.round(delivered / seconds),
    rtt: summarize(rtts),
    driver_cpu: driverCpu,
    lost_in_flight: outstanding,
  };
}

async function waitOrError(ms, error) {
  const until = performance.now() + ms;
  while (performance.now() < until && !error()) await sleep(Math.min(100, until - performance.now()));
}

const round3 = (x) => Math.round(x * 1000) / 1000;
