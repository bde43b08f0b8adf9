// The benchmark's load driver: `node main.mjs <relay|idle|handshake> '<json config>'`.
// Prints JSON lines on stdout; the last one is {"event":"result",...}.
import { useClient } from "./client.mjs";
import { handshake } from "./handshake.mjs";
import { idle } from "./idle.mjs";
import { PROTOCOLS } from "./protocols.mjs";
import { relay } from "./relay.mjs";
import { emit } from "./stats.mjs";

const COMMANDS = { relay, idle, handshake };

async function main() {
  const [command, rawConfig] = process.argv.slice(2);
  const run = COMMANDS[command];
  if (!run || !rawConfig) {
    process.stderr.write(`usage: node main.mjs <${Object.keys(COMMANDS).join("|")}> '<json>'\n`);
    process.exit(2);
  }
  const config = JSON.parse(rawConfig);
  useClient(config.client ?? "wire");
  const protocol = PROTOCOLS[config.protocol];
  if (!protocol) throw new Error(`unknown protocol ${config.protocol}`);
  // A hard stop: a wedged run must never outlive the orchestrator's budget.
  const guard = setTimeout(() => {
    emit("result", { error: `driver ran past its ${config.hardTimeoutMs} ms budget` });
    process.exit(3);
  }, config.hardTimeoutMs ?? 600000);
  guard.unref();
  const result = await run(protocol, config);
  emit("result", result ?? {});
  process.exit(0);
}

main().catch((error) => {
  emit("result", { error: String(error?.stack || error) });
  process.exit(1);
});
