// One benchmark client: connect from a loopback source address, sign in,
// then hand every text frame to a callback. The socket is the minimal
// client of wire.mjs by default, or the `ws` package ("client": "ws" in the
// driver's config) to cross-check figures against a mainstream client.
import WebSocket from "ws";
import { WireSocket } from "./wire.mjs";

let kind = "wire";

export function useClient(name) {
  if (name !== "wire" && name !== "ws") throw new Error(`unknown client ${name}`);
  kind = name;
}

/** The `ws` package behind the same small interface as WireSocket. */
class WsSocket {
  constructor(url, { localAddress, timeoutMs }, handlers) {
    this.closed = false;
    this.ws = new WebSocket(url, { ...CLIENT_OPTIONS, localAddress, handshakeTimeout: timeoutMs });
    this.ws.on("open", () => handlers.onOpen?.());
    this.ws.on("message", (data) => handlers.onText(data.toString("latin1")));
    this.ws.on("error", (error) => handlers.onError?.(error));
    this.ws.on("close", () => {
      this.closed = true;
      handlers.onClose?.();
    });
  }
  get open() {
    return this.ws.readyState === WebSocket.OPEN;
  }
  send(text) {
    this.ws.send(text);
  }
  close(code = 1000) {
    try {
      this.ws.close(code);
    } catch {
      this.ws.terminate();
    }
  }
  terminate() {
    this.ws.terminate();
  }
}

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
    this.closeWaiters = [];
    this.ready = new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`sign-in timed out after ${timeoutMs} ms`));
        this.terminate();
      }, timeoutMs);
      let signedIn = false;
      const handlers = {
        onOpen: () => {
          for (const frame of protocol.signInFrames(id)) this.socket.send(frame);
        },
        onText: (text) => {
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
        },
        onError: (error) => {
          clearTimeout(timer);
          reject(error);
        },
        onClose: () => {
          this.closed = true;
          clearTimeout(timer);
          this.stopHeartbeat();
          for (const waiter of this.closeWaiters.splice(0)) waiter();
          reject(new Error("closed before sign-in"));
        },
      };
      const Socket = kind === "ws" ? WsSocket : WireSocket;
      this.socket = new Socket(
        protocol.url(server, id),
        { localAddress: nextSource(sources), timeoutMs },
        handlers,
      );
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
      if (!this.closed) this.socket.send(frame);
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
    this.socket.send(text);
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
      this.closeWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
      this.socket.close(1000);
    });
  }

  terminate() {
    this.stopHeartbeat();
    try {
      this.socket.terminate();
    } catch {
      // Already gone.
    }
  }
}
