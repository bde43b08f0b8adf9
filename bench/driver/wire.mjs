// A minimal WebSocket client on a bare TCP socket (RFC 6455, client side).
//
// Why not `ws`: opening a connection through Node's http client and ws costs
// the driver more CPU than it costs PeerJS to accept it, so the storm and
// handshake measures were driver-bound. This client does only what the
// benchmark needs: the upgrade, text frames out (masked with a zero key),
// text/ping/close frames in (fragmented or not), and the close handshake.
import net from "node:net";

const OP_CONTINUATION = 0x0;
const OP_TEXT = 0x1;
const OP_CLOSE = 0x8;
const OP_PING = 0x9;
const OP_PONG = 0xa;
// The RFC's sample nonce: the server echoes a hash of it, which we do not
// check (we know whom we talk to); servers accept any 16-byte value.
const KEY = "dGhlIHNhbXBsZSBub25jZQ==";
const HEADER_END = Buffer.from("\r\n\r\n");

/** One frame from client to server; payload is ASCII text (all ours is). */
export function encodeFrame(opcode, payload) {
  const length = payload.length;
  const extra = length < 126 ? 0 : length < 65536 ? 2 : 8;
  const frame = Buffer.allocUnsafe(2 + extra + 4 + length);
  frame[0] = 0x80 | opcode;
  if (extra === 0) {
    frame[1] = 0x80 | length;
  } else if (extra === 2) {
    frame[1] = 0x80 | 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = 0x80 | 127;
    frame.writeUInt32BE(0, 2);
    frame.writeUInt32BE(length, 6);
  }
  // A zero masking key: XOR with it is the identity, so the payload is
  // copied as is (see client.mjs on why this is valid framing).
  frame.writeUInt32BE(0, 2 + extra);
  if (typeof payload === "string") frame.write(payload, 6 + extra, "latin1");
  else payload.copy(frame, 6 + extra);
  return frame;
}

export class WireSocket {
  /**
   * @param {string} url ws://host:port/path?query
   * @param {object} handlers onOpen(), onText(string), onClose(), onError(Error)
   */
  constructor(url, { localAddress }, handlers) {
    const { hostname, port, pathname, search } = new URL(url);
    this.handlers = handlers;
    this.open = false;
    this.closed = false;
    this.closeSent = false;
    this.pending = null; // unparsed bytes
    this.fragments = null; // payloads of a fragmented message
    this.socket = net.connect({ host: hostname, port: Number(port), localAddress });
    this.socket.setNoDelay(true);
    this.socket.on("connect", () => {
      this.socket.write(
        `GET ${pathname}${search} HTTP/1.1\r\nHost: ${hostname}:${port}\r\n` +
          `Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\n` +
          "Sec-WebSocket-Version: 13\r\n\r\n",
      );
    });
    this.socket.on("data", (chunk) => this.onData(chunk));
    this.socket.on("error", (error) => handlers.onError?.(error));
    this.socket.on("close", () => {
      this.closed = true;
      this.open = false;
      handlers.onClose?.();
    });
  }

  onData(chunk) {
    let data = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = null;
    if (!this.open) {
      const end = data.indexOf(HEADER_END);
      if (end < 0) {
        this.pending = data;
        return;
      }
      const status = data.toString("latin1", 0, Math.min(end, 64));
      if (!status.startsWith("HTTP/1.1 101")) {
        this.handlers.onError?.(new Error(`handshake refused: ${status.split("\r\n")[0]}`));
        this.socket.destroy();
        return;
      }
      this.open = true;
      this.handlers.onOpen?.();
      data = data.subarray(end + 4);
    }
    let offset = 0;
    while (data.length - offset >= 2) {
      const first = data[offset];
      let length = data[offset + 1] & 0x7f;
      let start = offset + 2;
      if (length === 126) {
        if (data.length - offset < 4) break;
        length = data.readUInt16BE(offset + 2);
        start += 2;
      } else if (length === 127) {
        if (data.length - offset < 10) break;
        length = data.readUInt32BE(offset + 2) * 2 ** 32 + data.readUInt32BE(offset + 6);
        start += 8;
      }
      // Servers never mask; a masked frame would be a protocol error.
      if (data.length < start + length) break;
      this.onFrame(first & 0x80, first & 0x0f, data.subarray(start, start + length));
      offset = start + length;
      if (this.closed) return;
    }
    if (offset < data.length) this.pending = data.subarray(offset);
  }

  onFrame(fin, opcode, payload) {
    if (opcode === OP_TEXT || opcode === OP_CONTINUATION) {
      if (!fin) {
        (this.fragments ??= []).push(Buffer.from(payload));
        return;
      }
      if (this.fragments) {
        this.fragments.push(payload);
        payload = Buffer.concat(this.fragments);
        this.fragments = null;
      }
      this.handlers.onText(payload.toString("latin1"));
    } else if (opcode === OP_PING) {
      this.socket.write(encodeFrame(OP_PONG, payload));
    } else if (opcode === OP_CLOSE) {
      // Echo the close (once), then the server closes the TCP connection.
      if (!this.closeSent) {
        this.closeSent = true;
        this.socket.write(encodeFrame(OP_CLOSE, payload.subarray(0, 2)));
      }
      this.socket.end();
    }
  }

  send(text) {
    this.socket.write(encodeFrame(OP_TEXT, text));
  }

  /** Start the close handshake; the socket's close event ends it. */
  close(code = 1000) {
    if (this.closed) return;
    if (!this.open) {
      this.socket.destroy();
      return;
    }
    if (!this.closeSent) {
      this.closeSent = true;
      const payload = Buffer.allocUnsafe(2);
      payload.writeUInt16BE(code, 0);
      this.socket.write(encodeFrame(OP_CLOSE, payload));
    }
  }

  terminate() {
    this.socket.destroy();
  }
}
