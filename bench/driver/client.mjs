// One benchmark client: connect from a loopback source address, sign in,
// then hand every text frame to a callback.
import WebSocket from "ws";

const CLIENT_OPTIONS = {
  // Neither server compresses; skipping the offer and UTF-8 validation keeps
  // the driver's per-frame cost low (the frames are ASCII we made).
  perMessageDeflate: false,
  skipUTF8Validation: true,
  // Redirects and huge frames cannot happen here; keep the defaults tight.
  followRedirects: false,
  maxPayload: 1 << 20,
  // An all-zero masking key is valid framing (RFC 6455 5.3 only asks
  // browsers for unpredictable keys) and lets ws skip XOR-ing every byte we
  // send: without it the driver, not the server, is the bottleneck against
  // PeerJS. Both servers unmask the same way either way.
  generateMask: (mask) => mask.fill(0),
};

let sourceIndex = 0;

/** Pick the next source address so that 15k sockets never exhaust the ports of one. */
export function nextSource(sources) {
  if (!sources || sources.length === 0) return undefined;
  sourceIndex = (sourceIndex + 1) % sources.length;
  return sources[sourceIndex];
}

export class Client {
  constructor(protocol, server, id, { sources, timeoutMs = 30000 } = {}) {
    this.protocol = protocol;
    this.id = id;
    this.onFrame = null;
    this.onControl = null;
    this.heartbeat = null;
    this.closed = false;
    this.ready = new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`sign-in timed out after ${timeoutMs} ms`));
        this.terminate();
      }, timeoutMs);
      const ws = new WebSocket(protocol.url(server, id), {
        ...CLIENT_OPTIONS,
        localAddress: nextSource(sources),
        handshakeTimeout: timeoutMs,
      });
      this.ws = ws;
      let signedIn = false;
      ws.on("open", () => {
        for (const frame of protocol.signInFrames(id)) ws.send(frame);
      });
      ws.on("message", (data) => {
        const text = data.toString("latin1");
        if (signedIn) {
          this.onFrame?.(text);
          return;
        }
        let message;
        try {
          message = JSON.parse(text);
        } catch {
          return;
        }
        if (protocol.isReady(message)) {
          signedIn = true;
          clearTimeout(timer);
          this.startHeartbeat();
          resolve(this);
        } else {
          const error = protocol.errorOf(message);
          if (error) {
            clearTimeout(timer);
            reject(new Error(`sign-in refused: ${error}`));
            this.terminate();
          }
        }
      });
      ws.on("error", (error) => {
        clearTimeout(timer);
        reject(error);
      });
      ws.on("close", () => {
        this.closed = true;
        clearTimeout(timer);
        this.stopHeartbeat();
        reject(new Error("closed before sign-in"));
      });
    });
    // A rejected sign-in is reported by whoever awaits `ready`.
    this.ready.catch(() => {});
  }

  startHeartbeat() {
    const frame = this.protocol.heartbeatFrame;
    if (!frame) return;
    // Like the peerjs client library: every 5 s, first one at a random
    // offset so 15k clients do not beat in step.
    const beat = () => {
      if (this.ws.readyState === WebSocket.OPEN) this.ws.send(frame);
    };
    this.heartbeat = setTimeout(() => {
      beat();
      this.heartbeat = setInterval(beat, 5000);
    }, Math.random() * 5000);
  }

  stopHeartbeat() {
    if (this.heartbeat) {
      clearTimeout(this.heartbeat);
      clearInterval(this.heartbeat);
      this.heartbeat = null;
    }
  }

  send(text) {
    this.ws.send(text);
  }

  /** Close politely and resolve when the socket is gone (or after a bound). */
  close(timeoutMs = 5000) {
    this.stopHeartbeat();
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.terminate();
        resolve();
      }, timeoutMs);
      this.ws.once("close", () => {
        clearTimeout(timer);
        resolve();
      });
      try {
        this.ws.close(1000);
      } catch {
        this.terminate();
      }
    });
  }

  terminate() {
    this.stopHeartbeat();
    try {
      this.ws.terminate();
    } catch {
      // Already gone.
    }
  }
}
