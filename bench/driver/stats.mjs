// Measurement helpers shared by the driver's commands.

/** Write one JSON event line for the orchestrator. */
export function emit(event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");
}

/** p-th percentile (0..100) of numbers, by nearest rank; null when empty. */
export function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}

export function summarize(samples) {
  const sorted = Float64Array.from(samples).sort();
  return {
    count: sorted.length,
    p50_ms: round(percentile(sorted, 50)),
    p90_ms: round(percentile(sorted, 90)),
    p99_ms: round(percentile(sorted, 99)),
    max_ms: round(sorted.length ? sorted[sorted.length - 1] : null),
  };
}

function round(value) {
  return value === null ? null : Math.round(value * 1000) / 1000;
}

/**
 * The driver's own CPU use over a window, as a fraction of one core: near 1.0
 * means the driver, not the server, set the pace and the run is void.
 */
export class CpuMeter {
  constructor() {
    this.reset();
  }
  reset() {
    this.cpu = process.cpuUsage();
    this.wall = performance.now();
  }
  fraction() {
    const used = process.cpuUsage(this.cpu);
    const wallMs = performance.now() - this.wall;
    return wallMs > 0 ? Math.round(((used.user + used.system) / 1000 / wallMs) * 1000) / 1000 : 0;
  }
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
